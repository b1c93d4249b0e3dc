"""Text-aware hybrid: item = ID embedding + learned projection of the language model's item vector.

The LM's item vectors live in the buffer `text_features` [n_items, text_dim], so a saved hybrid
scores without the LM. When the LM's top layers are fine-tuned (transfer learning, see
`rrec_core.training.loop.LMTower`) the trainer refreshes the buffer from the tuned LM before saving.

Item cold start (docs/cold_start.md): the buffer `item_id_mask` [n_items] is 0 for an item no training
interaction has touched. Its ID row holds nothing learned (or worse, only what it learned as a sampled
negative), so it is replaced by an ID vector generated from the item's text: `cold_map`, a ridge
regression from the normalized LM vector to the ID rows of the trained items (refitted by the trainer
before every validation). `id_dropout` drops warm items' ID rows at that rate in training
(DropoutNet's trick), so the text part learns to carry a score without them.
"""
from __future__ import annotations

import torch
from torch import nn

from rrec_core.models.base import Recommender


class TextHybrid(Recommender):
    model_type = "text_hybrid"
    optional_state = ("item_id_mask", "cold_map")  # added with the cold-start treatment: all items known

    def __init__(self, n_users: int, n_items: int, text_dim: int, dim: int = 64, text_dropout: float = 0.1,
                 id_dropout: float = 0.0, cold_map_reg: float = 1.0) -> None:
        super().__init__()
        self.dim, self.text_dim, self.text_dropout, self.id_dropout = dim, text_dim, text_dropout, id_dropout
        self.cold_map_reg = cold_map_reg
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
        self.register_buffer("item_id_mask", torch.ones(n_items))
        self.register_buffer("cold_map", torch.zeros(text_dim + 1, dim))  # [W; b], zero until fitted
        # set by a trainer that fine-tunes the LM: returns [n or len(items), text_dim] with grad
        self.text_override = None

    def set_text_source(self, source) -> None:
        """Read item text vectors from `source(items)` (a tuned LM tower, a LaggedTower) instead of the
        buffer; None: the buffer again. A module source is a child module (moved and switched to train /
        eval with the model); any other callable is a plain attribute."""
        self._modules.pop("text_override", None)
        self.__dict__.pop("text_override", None)
        if isinstance(source, nn.Module):
            self.text_override = source
        else:
            object.__setattr__(self, "text_override", source)

    def set_text_features(self, features: torch.Tensor) -> None:
        if features.shape != self.text_features.shape:
            raise ValueError(f"text features {tuple(features.shape)} != expected {tuple(self.text_features.shape)}")
        self.text_features.copy_(features)

    def _features(self, items: torch.Tensor | None, token_states: torch.Tensor | None = None) -> torch.Tensor:
        if self.text_override is not None:
            return self.text_override(items, token_states) if token_states is not None else self.text_override(items)
        return self.text_features if items is None else self.text_features[items]

    def text_vectors(self, items: torch.Tensor | None = None, token_states: torch.Tensor | None = None) -> torch.Tensor:
        """Projected text part of the item representation: [n_items or len(items), dim].

        token_states (only with a fine-tuned LM tower) replaces the tower's input: text-side attacks."""
        return self.text_proj(self.dropout(self.text_norm(self._features(items, token_states))))

    def has_cold_items(self) -> bool:
        return bool((self.item_id_mask == 0).any())

    @torch.no_grad()
    def fit_cold_map(self) -> None:
        """Ridge regression (closed form, `cold_map_reg`) from the normalized LM vectors of the trained
        items to their ID rows: what a cold item's ID row is generated from."""
        x = self.text_norm(self._features(None).detach())
        x = torch.cat([x, torch.ones(len(x), 1, device=x.device, dtype=x.dtype)], 1)
        warm = self.item_id_mask > 0
        a, y = x[warm], self.item_embedding.weight.detach()[warm]
        gram = a.T @ a + self.cold_map_reg * torch.eye(a.shape[1], device=a.device, dtype=a.dtype)
        self.cold_map.copy_(torch.linalg.solve(gram, a.T @ y))

    def set_item_id_mask(self, trained_items: torch.Tensor) -> None:
        """Score the items outside `trained_items` (internal ids with training interactions) by text alone."""
        mask = torch.zeros_like(self.item_id_mask)
        mask[torch.as_tensor(trained_items, dtype=torch.long, device=mask.device)] = 1.0
        self.item_id_mask.copy_(mask)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item_embedding.weight if items is None else self.item_embedding(items)
        known = self.item_id_mask if items is None else self.item_id_mask[items]
        keep = known
        if self.training and self.id_dropout > 0:
            keep = keep * (torch.rand(keep.shape, device=keep.device) >= self.id_dropout).to(keep.dtype)
        ids = ids * keep.unsqueeze(-1)
        if bool((known == 0).any()):  # cold items: the ID row generated from text
            x = self.text_norm(self._features(items))
            generated = x @ self.cold_map[:-1] + self.cold_map[-1]
            ids = ids + (1 - known).unsqueeze(-1) * generated
        return ids + self.text_vectors(items)

    def item_vectors_for_features(self, item: int, features: torch.Tensor) -> torch.Tensor:
        """[len(features), dim]: what item `item`'s vector would be with each row of `features` as its LM vector
        (its ID row, or for a cold item the ID row its text generates, plus the projected text): how a text
        attack scores candidate texts without touching the model."""
        x = self.text_norm(features)
        text = self.text_proj(x)
        known = self.item_id_mask[item]
        ids = self.item_embedding.weight[item] * known
        if float(known) == 0.0:
            ids = ids + x @ self.cold_map[:-1] + self.cold_map[-1]
        return ids + text

    def init_kwargs(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "text_dim": self.text_dim, "dim": self.dim,
                "text_dropout": self.text_dropout, "id_dropout": self.id_dropout, "cold_map_reg": self.cold_map_reg}
