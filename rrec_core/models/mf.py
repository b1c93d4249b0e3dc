"""Matrix factorization trained with BPR (Rendle et al., 2009): the anchor model."""
from __future__ import annotations

import torch
from torch import nn

from rrec_core.models.base import Recommender


class MFBPR(Recommender):
    model_type = "mf_bpr"

    def __init__(self, n_users: int, n_items: int, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        # RecBole initializes BPR with xavier normal; matching it keeps the anchor comparable
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        return self.item_embedding.weight if items is None else self.item_embedding(items)

    def init_kwargs(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "dim": self.dim}
