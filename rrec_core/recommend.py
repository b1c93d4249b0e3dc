"""Top-k recommendations of a trained model for its users: what a recommender is for.

Every item the user has interacted with (train, validation and test: all the data the model was built
from) is masked, so only new items are recommended. Ids in and out are the raw ids of the data set;
an id the model has never seen is an error that says what it is (unknown, or quarantined by the
poisoning screen) instead of a silent empty list.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from rrec_core.data.split import Split
from rrec_core.evaluation.ranking import _batch_mask, _sorted_pairs
from rrec_core.models import Recommender

RECOMMENDATION_COLUMNS = ("user_id", "rank", "item_id", "title", "score")


class UnknownUserError(ValueError):
    """User ids the model cannot recommend for; the message says why for each."""


def _history(split: Split) -> torch.Tensor:
    pairs = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in (split.train, split.valid, split.test)])
    return torch.as_tensor(pairs)


def user_indices(split: Split, user_ids: list[str], quarantine: pd.DataFrame | None = None) -> list[int]:
    """Internal indices of raw `user_ids`; UnknownUserError naming every id that has none, and why."""
    index = {u: i for i, u in enumerate(split.user_ids)}
    quarantined = set(quarantine["user_id"].astype(str)) if quarantine is not None and len(quarantine) else set()
    missing = [u for u in user_ids if u not in index]
    if missing:
        reasons = [f"{u!r}: quarantined by the poisoning screen (artifacts/validated_interactions/quarantine.parquet)"
                   if u in quarantined else f"{u!r}: not a user of the training data" for u in missing]
        sample = ", ".join(repr(u) for u in split.user_ids[:3])
        raise UnknownUserError(f"cannot recommend for {len(missing)} user id(s): " + "; ".join(reasons)
                               + f" (known ids look like {sample}, ...; {split.n_users} users)")
    return [index[u] for u in user_ids]


def top_k(model: Recommender, split: Split, users: list[int] | None = None, k: int = 10,
          batch_users: int = 1024) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(users [n], items [n, k], scores [n, k]): each user's k best items outside everything it interacted with."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    device = next(model.parameters()).device
    asked = torch.arange(split.n_users) if users is None else torch.as_tensor(users, dtype=torch.long)
    order = torch.argsort(asked, stable=True)  # the history mask is built over sorted blocks of users
    ordered = asked[order]
    hist = _sorted_pairs(_history(split))
    kk = min(k, split.n_items)
    out_items, out_scores = [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ordered), batch_users):
            block = ordered[start:start + batch_users]
            scores = model.score(block.to(device)).float().cpu()
            scores = scores.masked_fill(_batch_mask(hist, block, split.n_users, split.n_items), float("-inf"))
            s, i = scores.topk(kk, dim=1)
            out_items.append(i)
            out_scores.append(s)
    back = torch.argsort(order)
    return asked, torch.cat(out_items)[back], torch.cat(out_scores)[back]


def recommend(model: Recommender, split: Split, items: pd.DataFrame | None, user_ids: list[str] | None = None,
              k: int = 10, quarantine: pd.DataFrame | None = None, batch_users: int = 1024) -> pd.DataFrame:
    """One row per (user, rank): user_id, rank (1 = best), item_id, title, score. All users when user_ids is None.

    A user who has interacted with all but fewer than k items gets fewer rows (masked items are never shown)."""
    if model.user_ids != split.user_ids or model.item_ids != split.item_ids:
        raise ValueError("the model was trained on another split (its user or item ids differ from the data's)")
    users = None if user_ids is None else user_indices(split, list(dict.fromkeys(user_ids)), quarantine)
    u, i, s = top_k(model, split, users, k, batch_users)
    n, kk = i.shape
    frame = pd.DataFrame({
        "user_id": np.repeat(np.asarray(split.user_ids, dtype=object)[u.numpy()], kk),
        "rank": np.tile(np.arange(1, kk + 1), n),
        "item_id": np.asarray(split.item_ids, dtype=object)[i.flatten().numpy()],
        "score": s.flatten().numpy().astype("float64"),
    })
    frame = frame[np.isfinite(frame["score"])].reset_index(drop=True)
    titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str))) if items is not None else {}
    frame.insert(3, "title", [titles.get(x, "") for x in frame["item_id"]])
    return frame[list(RECOMMENDATION_COLUMNS)]
