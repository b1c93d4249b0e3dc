"""Negative sampling for BPR.

Negatives are drawn uniformly from the items a user has not interacted with *in training*: the
sampler is built from the training pairs only, so it never sees (and never avoids) validation or
test items, which would leak them.
"""
from __future__ import annotations

import numpy as np
import torch


class NegativeSampler:
    """Uniform negatives that exclude the user's training positives (rejection on a sorted key set)."""

    def __init__(self, train: np.ndarray, n_items: int, generator: torch.Generator) -> None:
        t = torch.as_tensor(np.array(train, dtype=np.int64))
        self.n_items = n_items
        self.keys = torch.unique(t[:, 0] * n_items + t[:, 1])  # sorted
        self.gen = generator

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        k = users * self.n_items + items
        pos = torch.searchsorted(self.keys, k).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == k

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        neg = torch.randint(self.n_items, users.shape, generator=self.gen)
        for _ in range(100):
            bad = self.is_positive(users, neg)
            if not bad.any():
                return neg
            neg[bad] = torch.randint(self.n_items, (int(bad.sum()),), generator=self.gen)
        raise RuntimeError("negative sampling did not converge: some user has interacted with nearly every item")
