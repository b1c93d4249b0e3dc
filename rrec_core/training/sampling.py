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


class NegativeSampler:
    """Uniform negatives that exclude the user's training positives (rejection on a sorted key set)."""

    def __init__(self, train: np.ndarray, n_items: int, generator: torch.Generator,
                 candidates: np.ndarray | torch.Tensor | None = None) -> None:
        t = torch.as_tensor(np.array(train, dtype=np.int64))
        self.n_items = n_items
        self.keys = torch.unique(t[:, 0] * n_items + t[:, 1])  # sorted
        self.gen = generator
        self.candidates = None if candidates is None else torch.as_tensor(np.asarray(candidates, dtype=np.int64))

    def _draw(self, shape) -> torch.Tensor:
        if self.candidates is None:
            return torch.randint(self.n_items, shape, generator=self.gen)
        return self.candidates[torch.randint(len(self.candidates), shape, generator=self.gen)]

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        k = users * self.n_items + items
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
