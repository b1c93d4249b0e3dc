"""Negative sampling for BPR.

Negatives are drawn uniformly from the items a user has not interacted with *in training*: the
sampler is built from the training pairs only, so it never sees (and never avoids) validation or
test items, which would leak them. `candidates` narrows the draw to a set of items: the cold-start
treatment keeps items without training interactions out, so BPR does not teach the text projection
that new items are bad (docs/cold_start.md).
"""
from __future__ import annotations

import numpy as np
import torch

DENSE_LOOKUP_BYTES = 64 * 2**20


class NegativeSampler:
    """Uniform negatives that exclude the user's training positives (rejection sampling).

    Membership is a lookup in a dense users x items bitmap while it fits DENSE_LOOKUP_BYTES (ML-1M's is
    22 MB), else a binary search in the sorted pair keys: the same answers, so the same draws, and the
    lookup is what a training step waits on (a batch of 2048 needs ~5 rejection rounds at ML-100K's density)."""

    def __init__(self, train: np.ndarray, n_items: int, generator: torch.Generator,
                 candidates: np.ndarray | torch.Tensor | None = None) -> None:
        t = torch.as_tensor(np.array(train, dtype=np.int64)).reshape(-1, 2)
        self.n_items = n_items
        self.keys = torch.unique(t[:, 0] * n_items + t[:, 1])  # sorted
        self.n_rows = int(t[:, 0].max()) + 1 if len(t) else 0
        self.dense: torch.Tensor | None = None
        if self.n_rows * n_items <= DENSE_LOOKUP_BYTES:
            self.dense = torch.zeros(self.n_rows * n_items + 1, dtype=torch.bool)  # last slot: users beyond
            self.dense[self.keys] = True
        self.gen = generator
        self.candidates = None if candidates is None else torch.as_tensor(np.asarray(candidates, dtype=np.int64))

    def _draw(self, shape) -> torch.Tensor:
        if self.candidates is None:
            return torch.randint(self.n_items, shape, generator=self.gen)
        return self.candidates[torch.randint(len(self.candidates), shape, generator=self.gen)]

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        k = users * self.n_items + items
        if self.dense is not None:  # a user without training rows maps to the last slot (False)
            return self.dense[torch.where(users < self.n_rows, k, self.n_rows * self.n_items)]
        if len(self.keys) == 0:
            return torch.zeros_like(k, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, k).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == k

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        neg = self._draw(users.shape)
        for _ in range(100):
            bad = self.is_positive(users, neg)
            if not bad.any():
                return neg
            neg[bad] = self._draw((int(bad.sum()),))
        raise RuntimeError("negative sampling did not converge: some user has interacted with nearly every item")
