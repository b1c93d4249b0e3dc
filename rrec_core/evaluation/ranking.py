"""Top-k metrics under full ranking (every item not in the user's history is a candidate)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
import torch

if TYPE_CHECKING:
    from rrec_core.config import EvalConfig
    from rrec_core.data.split import Split
    from rrec_core.models import Recommender

METRICS = ("recall", "ndcg", "hit", "mrr", "precision")


def topk_per_user(hits: torch.Tensor, n_pos: torch.Tensor, ks: Iterable[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics from a ranked hit matrix: {"ndcg@10": [n_users], ...}.

    hits:  [n_users, max_k] bool, hits[u, r] = the item at rank r is a held-out positive of u
    n_pos: [n_users] number of held-out positives of u (users with none must be filtered out)
    Definitions follow RecBole: NDCG's ideal DCG uses min(n_pos, k) relevant items.
    """
    hits = hits.float()
    n_pos = n_pos.float()
    max_k = hits.shape[1]
    discount = 1.0 / torch.log2(torch.arange(2, max_k + 2, dtype=torch.float32))
    ranks = torch.arange(1, max_k + 1, dtype=torch.float32)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(1)
        idcg_len = torch.clamp(n_pos, max=k).long()
        idcg = torch.cumsum(discount[:k], 0)[idcg_len - 1]
        out[f"recall@{k}"] = n_hit / n_pos
        out[f"ndcg@{k}"] = (h * discount[:k]).sum(1) / idcg
        out[f"hit@{k}"] = (n_hit > 0).float()
        out[f"mrr@{k}"] = torch.where(h.any(1), 1.0 / ranks[h.argmax(1)], torch.zeros(len(h)))
        out[f"precision@{k}"] = n_hit / k
    return out


def topk_metrics(hits: torch.Tensor, n_pos: torch.Tensor, ks: Iterable[int]) -> dict[str, float]:
    """Mean over users of topk_per_user."""
    return {k: v.mean().item() for k, v in topk_per_user(hits, n_pos, ks).items()}


def evaluate_full_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    n_users: int,
    n_items: int,
    target: np.ndarray,
    exclude: list[np.ndarray],
    ks: Iterable[int] = (10, 20, 50),
    batch_users: int = 1024,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Rank all items for every user who has `target` pairs; `exclude` pairs (history) are masked.

    score_fn(users [B]) -> scores [B, n_items]. Users without target pairs are skipped, as RecBole does.
    """
    users, per_user = full_ranking_per_user(score_fn, n_users, n_items, target, exclude, ks, batch_users, device)
    return {k: v.mean().item() for k, v in per_user.items()}


def full_ranking_per_user(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    n_users: int,
    n_items: int,
    target: np.ndarray,
    exclude: list[np.ndarray],
    ks: Iterable[int] = (10, 20, 50),
    batch_users: int = 1024,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(evaluated users [n] sorted, {metric: [n] per user}) of evaluate_full_ranking."""
    ranking = FullRanking(n_users, n_items, target, exclude, ks, batch_users, keep_masks=False)
    return ranking.users, ranking.per_user(score_fn, device)


MASK_CACHE_BYTES = 256 * 2**20


class FullRanking:
    """The full-ranking evaluation of one (target, exclude) split, reusable across many score functions.

    An attack evaluates the same users against the same history dozens of times per radius; sorting the
    pairs and building each block's masks once (while they fit MASK_CACHE_BYTES, 2 bools per score)
    instead of per call took ~1/3 of the evaluation's time (profile of robustness_evaluation, 2026-12-07)."""

    def __init__(self, n_users: int, n_items: int, target: np.ndarray, exclude: list[np.ndarray],
                 ks: Iterable[int] = (10, 20, 50), batch_users: int = 1024, keep_masks: bool = True) -> None:
        self.n_users, self.n_items = n_users, n_items
        self.ks = tuple(sorted(set(ks)))
        self.max_k = min(max(self.ks), n_items)
        self.target = _sorted_pairs(torch.as_tensor(np.array(target, dtype=np.int64)).reshape(-1, 2))
        self.users = torch.unique(self.target[:, 0])
        self.exclude = _sorted_pairs(torch.cat([torch.as_tensor(np.array(e, dtype=np.int64)).reshape(-1, 2)
                                                for e in exclude]) if exclude else torch.empty(0, 2, dtype=torch.long))
        self.blocks = [self.users[s:s + batch_users] for s in range(0, len(self.users), batch_users)]
        keep = keep_masks and 2 * len(self.users) * n_items <= MASK_CACHE_BYTES
        self._masks = [self._block_masks(b) for b in self.blocks] if keep else None

    def _block_masks(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (_batch_mask(self.exclude, u, self.n_users, self.n_items),
                _batch_mask(self.target, u, self.n_users, self.n_items))

    def per_user(self, score_fn: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device = "cpu"
                 ) -> dict[str, torch.Tensor]:
        """{metric: [n] per evaluated user}; score_fn(users [B]) -> scores [B, n_items]."""
        all_hits, all_npos = [], []
        with torch.no_grad():
            for j, u in enumerate(self.blocks):
                hist, pos = self._masks[j] if self._masks is not None else self._block_masks(u)
                scores = score_fn(u.to(device)).float().cpu()
                scores.masked_fill_(hist, float("-inf"))
                top = torch.topk(scores, self.max_k, dim=1).indices
                all_hits.append(torch.gather(pos, 1, top))
                all_npos.append(pos.sum(1))
        if not all_hits:
            return {f"{m}@{k}": torch.zeros(0) for m in METRICS for k in self.ks}
        return topk_per_user(torch.cat(all_hits), torch.cat(all_npos), self.ks)


def _sorted_pairs(pairs: torch.Tensor) -> torch.Tensor:
    return pairs[torch.argsort(pairs[:, 0], stable=True)]


def _batch_mask(pairs: torch.Tensor, users: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """Dense bool [len(users), n_items] of the user-sorted `pairs` that belong to the sorted `users`.

    Only the batch's slice of pairs is touched, so memory stays O(batch x items) at any scale."""
    lo, hi = torch.searchsorted(pairs[:, 0].contiguous(), torch.stack([users[0], users[-1] + 1])).tolist()
    chunk = pairs[lo:hi]
    row = torch.full((n_users,), -1, dtype=torch.long)
    row[users] = torch.arange(len(users))
    r = row[chunk[:, 0]]
    keep = r >= 0
    mask = torch.zeros(len(users), n_items, dtype=torch.bool)
    mask[r[keep], chunk[keep, 1]] = True
    return mask


def evaluate_model(model: Recommender, split: Split, part: str, cfg: EvalConfig,
                   device: torch.device | str | None = None) -> dict[str, float]:
    """Full-ranking metrics on `valid` (train masked) or `test` (train and valid masked, as RecBole).
    Scores on `device`, by default the model's own."""
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    if part == "valid":
        target, exclude = split.valid, [split.train]
    elif part == "test":
        target, exclude = split.test, [split.train, split.valid]
    else:
        raise ValueError(part)
    with torch.no_grad():
        items = model.item_vectors()  # computed once per evaluation, not per user batch
        return evaluate_full_ranking(lambda u: model.user_vectors(u) @ items.T, split.n_users, split.n_items,
                                     target, exclude, cfg.ks, cfg.batch_users, device)
