"""Text-aware hybrid: item = ID embedding + learned projection of the language model's item vector.

The LM's item vectors live in the buffer `text_features` [n_items, text_dim], so a saved hybrid
scores without the LM. When the LM's top layers are fine-tuned (transfer learning, see
`rrec_core.training.loop.LMTower`) the trainer refreshes the buffer from the tuned LM before saving.
"""
from __future__ import annotations

import torch
from torch import nn

from rrec_core.models.base import Recommender


class TextHybrid(Recommender):
    model_type = "text_hybrid"

    def __init__(self, n_users: int, n_items: int, text_dim: int, dim: int = 64, text_dropout: float = 0.1) -> None:
        super().__init__()
        self.dim, self.text_dim, self.text_dropout = dim, text_dim, text_dropout
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)
        self.text_norm = nn.LayerNorm(text_dim)
        self.text_proj = nn.Linear(text_dim, dim)  # its output is what text-side attacks perturb
        # zero-init: training starts from plain MF and learns how much text to use. With the default
        # init the text term is 15.7x the xavier ID vectors and the model degrades to content-based.
        nn.init.zeros_(self.text_proj.weight)
        nn.init.zeros_(self.text_proj.bias)
        self.dropout = nn.Dropout(text_dropout)
        self.register_buffer("text_features", torch.zeros(n_items, text_dim))
        # set by a trainer that fine-tunes the LM: returns [n or len(items), text_dim] with grad
        self.text_override = None

    def set_text_features(self, features: torch.Tensor) -> None:
        if features.shape != self.text_features.shape:
            raise ValueError(f"text features {tuple(features.shape)} != expected {tuple(self.text_features.shape)}")
        self.text_features.copy_(features)

    def text_vectors(self, items: torch.Tensor | None = None, token_states: torch.Tensor | None = None) -> torch.Tensor:
        """Projected text part of the item representation: [n_items or len(items), dim].

        token_states (only with a fine-tuned LM tower) replaces the tower's input: text-side attacks."""
        if self.text_override is not None:
            feats = self.text_override(items, token_states) if token_states is not None else self.text_override(items)
        else:
            feats = self.text_features if items is None else self.text_features[items]
        return self.text_proj(self.dropout(self.text_norm(feats)))

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item_embedding.weight if items is None else self.item_embedding(items)
        return ids + self.text_vectors(items)

    def init_kwargs(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "text_dim": self.text_dim, "dim": self.dim,
                "text_dropout": self.text_dropout}
