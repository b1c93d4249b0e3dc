"""Poisoning metrics: how well the screen finds the injected users, and how far an injection moves
the target items in a trained model's rankings.

Recommendation-side metrics take any model with `score(users: LongTensor) -> [B, n_items]` (higher
is better) and raw id maps `.user_ids` / `.item_ids`, plus the interactions it was trained on
(`history`: a frame with user_id / item_id, or a `Split`, whose train part is used). As in full-ranking
evaluation, a user's training items are masked; a (user, target) pair counts only when the user had
not interacted with the target in training. "Real users" are the model's users minus `exclude_users`
(pass the injected ids), or an explicit `users` list.

  target_hit@k       per target, the fraction of eligible real users whose top-k holds it; mean over targets
  target_exposure@k  the fraction of real users with at least one target in their top-k
  target_percentile  mean percentile of the target among the user's candidates: 1 - (rank - 1) / (n_cand - 1),
                     1 = ranked first, 0 = last; a scale-free position, comparable across models
  prediction_shift   mean change of target_percentile from a clean to a poisoned model over the
                     (user, target) pairs eligible in both (raw scores of two separately trained models
                     live on different scales, percentiles do not)
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
import torch


def detection_metrics(flagged: Iterable[str], injected: Iterable[str]) -> dict[str, float]:
    """Precision, recall and F1 of the flagged users against the injected ones (empty flags: precision 0)."""
    flagged, injected = set(map(str, flagged)), set(map(str, injected))
    tp = len(flagged & injected)
    precision = tp / len(flagged) if flagged else 0.0
    recall = tp / len(injected) if injected else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "flagged": float(len(flagged)),
            "injected": float(len(injected)), "true_positives": float(tp)}


def target_ranks(model, targets: Iterable[str], history, users: Iterable[str] | None = None,
                 exclude_users: Iterable[str] = (), batch_users: int = 1024) -> pd.DataFrame:
    """One row per (real user, target): rank among the user's candidates (1 = best), n_candidates,
    percentile, and `eligible` (the user had not interacted with the target in training)."""
    user_ids = [str(u) for u in model.user_ids]
    item_ids = [str(i) for i in model.item_ids]
    uindex, iindex = pd.Index(user_ids), pd.Index(item_ids)
    targets = [str(t) for t in targets]
    t_idx = iindex.get_indexer(targets)
    if (t_idx < 0).any():
        raise ValueError(f"targets unknown to the model: {[t for t, k in zip(targets, t_idx) if k < 0]}")
    if users is None:
        skip = set(map(str, exclude_users))
        users = [u for u in user_ids if u not in skip]
    users = [str(u) for u in users]
    u_idx = uindex.get_indexer(users)
    if (u_idx < 0).any():
        raise ValueError(f"users unknown to the model: {[u for u, k in zip(users, u_idx) if k < 0][:5]}")
    hist = _history_frame(history)
    hu, hi = uindex.get_indexer(hist["user_id"]), iindex.get_indexer(hist["item_id"])
    keep = (hu >= 0) & (hi >= 0)
    hist_pairs = torch.as_tensor(np.unique(np.stack([hu[keep], hi[keep]], 1), axis=0).reshape(-1, 2))
    order = np.argsort(u_idx, kind="stable")
    users_sorted = torch.as_tensor(u_idx[order])
    n_items = len(item_ids)
    tt = torch.as_tensor(t_idx)
    ranks, n_cand, eligible = [], [], []
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            for s in range(0, len(users_sorted), batch_users):
                u = users_sorted[s:s + batch_users]
                scores = model.score(u).detach().float().cpu()  # [B, n_items]
                mask = _mask(hist_pairs, u, n_items)  # [B, n_items] training items
                scores = scores.masked_fill(mask, float("-inf"))
                ts = scores[:, tt]  # [B, T]
                ranks.append(1 + torch.stack([(scores > ts[:, j:j + 1]).sum(1) for j in range(len(tt))], 1))  # [B, T]
                n_cand.append((~mask).sum(1, keepdim=True).expand(-1, len(tt)))
                eligible.append(~mask[:, tt])
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    rank = torch.cat(ranks).numpy() if ranks else np.zeros((0, len(tt)), int)
    cand = torch.cat(n_cand).numpy() if n_cand else np.zeros((0, len(tt)), int)
    elig = torch.cat(eligible).numpy() if eligible else np.zeros((0, len(tt)), bool)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    rank, cand, elig = rank[inv], cand[inv], elig[inv]  # back to the caller's user order
    pct = 1.0 - (rank - 1) / np.maximum(cand - 1, 1)
    return pd.DataFrame({"user_id": np.repeat(users, len(targets)), "item_id": np.tile(targets, len(users)),
                         "rank": rank.ravel(), "n_candidates": cand.ravel(), "percentile": pct.ravel(),
                         "eligible": elig.ravel()})


def poisoning_metrics(model, targets: Iterable[str], history, users: Iterable[str] | None = None,
                      exclude_users: Iterable[str] = (), ks: Iterable[int] = (10, 50),
                      exposure_k: int = 50) -> dict[str, float]:
    """target_hit@k for each k, target_exposure@exposure_k and target_percentile (see the module docstring)."""
    r = target_ranks(model, targets, history, users, exclude_users)
    e = r[r["eligible"]]
    out: dict[str, float] = {}
    for k in sorted(set(ks)):
        out[f"target_hit@{k}"] = float((e["rank"] <= k).groupby(e["item_id"]).mean().mean()) if len(e) else 0.0
    top = r["eligible"] & (r["rank"] <= exposure_k)
    out[f"target_exposure@{exposure_k}"] = float(top.groupby(r["user_id"]).any().mean()) if len(r) else 0.0
    out["target_percentile"] = float(e["percentile"].mean()) if len(e) else float("nan")
    return out


def prediction_shift(clean_model, poisoned_model, targets: Iterable[str], clean_history, poisoned_history,
                     users: Iterable[str] | None = None) -> float:
    """Mean target-percentile change, poisoned minus clean, over real users known to both models
    (default: the clean model's users) and the (user, target) pairs eligible in both."""
    targets = list(targets)
    if users is None:
        known = set(map(str, poisoned_model.user_ids))
        users = [str(u) for u in clean_model.user_ids if str(u) in known]
    users = list(users)
    a = target_ranks(clean_model, targets, clean_history, users)
    b = target_ranks(poisoned_model, targets, poisoned_history, users)
    ok = a["eligible"].to_numpy() & b["eligible"].to_numpy()
    if not ok.any():
        return float("nan")
    return float((b["percentile"].to_numpy()[ok] - a["percentile"].to_numpy()[ok]).mean())


def _history_frame(history) -> pd.DataFrame:
    if hasattr(history, "train") and hasattr(history, "user_ids"):  # a Split: its training pairs
        tr = np.asarray(history.train, dtype=np.int64).reshape(-1, 2)
        return pd.DataFrame({"user_id": np.asarray(history.user_ids, dtype=object)[tr[:, 0]],
                             "item_id": np.asarray(history.item_ids, dtype=object)[tr[:, 1]]})
    return pd.DataFrame({"user_id": history["user_id"].astype(str).to_numpy(),
                         "item_id": history["item_id"].astype(str).to_numpy()})


def _mask(pairs: torch.Tensor, users: torch.Tensor, n_items: int) -> torch.Tensor:
    """Dense bool [len(users), n_items]: pairs (u, i) whose user is in `users` (any order)."""
    mask = torch.zeros(len(users), n_items, dtype=torch.bool)
    if len(pairs) == 0 or len(users) == 0:
        return mask
    row = torch.full((int(max(pairs[:, 0].max().item(), users.max().item())) + 1,), -1, dtype=torch.long)
    row[users] = torch.arange(len(users))
    r = row[pairs[:, 0]]
    keep = r >= 0
    mask[r[keep], pairs[keep, 1]] = True
    return mask
