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

A cold item's vector can pass through a `NewItemGuard` (rrec_core.models.new_items, buffer
`new_item_guard`, off when zero): whoever writes a new item's title sets its whole vector, so the
guard fixes the part that sets its audience-wide exposure and caps the rest (docs/text_attacks.md).
"""
from __future__ import annotations

import torch
from torch import nn

from rrec_core.models.base import Recommender
from rrec_core.models.new_items import NewItemGuard


class TextHybrid(Recommender):
    model_type = "text_hybrid"
    # added with the cold-start treatment (all items known) and the new-item guard (off)
    optional_state = ("item_id_mask", "cold_map", "new_item_guard", "new_item_guard_cap")

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
        # [direction; level; rest-norm cap (inf: none)] of a NewItemGuard; all zero: cold items unguarded
        self.register_buffer("new_item_guard", torch.zeros(dim + 2))
        self.register_buffer("new_item_guard_cap", torch.zeros(1))  # 1: the guard's level is a ceiling
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

    def set_new_item_guard(self, guard: NewItemGuard | None) -> None:
        """Serve cold items through `guard` (None: unguarded)."""
        if guard is None:
            self.new_item_guard.zero_()
            self.new_item_guard_cap.zero_()
            return
        self.new_item_guard_cap.fill_(1.0 if guard.cap_level else 0.0)
        cap = float("inf") if guard.max_rest_norm is None else guard.max_rest_norm
        self.new_item_guard.copy_(torch.cat([guard.direction.to(self.new_item_guard),
                                             self.new_item_guard.new_tensor([guard.level, cap])]))

    @torch.no_grad()
    def fit_new_item_guard(self, rest_quantile: float | None, level_quantile: float = 0.5,
                           cap_level: bool = False) -> NewItemGuard:
        """Fit a NewItemGuard on this model's users and trained items (as served, dropout off) and serve the
        cold items through it."""
        was_training = self.training
        self.eval()
        try:
            users = self.user_vectors(torch.arange(self.n_users, device=self.item_id_mask.device))
            guard = NewItemGuard.fit(users, self.item_vectors()[self.item_id_mask > 0], rest_quantile,
                                     level_quantile, cap_level)
        finally:
            self.train(was_training)
        self.set_new_item_guard(guard)
        return guard

    def new_item_guard_in_use(self) -> NewItemGuard | None:
        g = self.new_item_guard
        if not bool(g[:-2].any()):
            return None
        cap = float(g[-1])
        return NewItemGuard(g[:-2], float(g[-2]), None if cap == float("inf") else cap,
                            bool(self.new_item_guard_cap[0] > 0))

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        ids = self.item_embedding.weight if items is None else self.item_embedding(items)
        known = self.item_id_mask if items is None else self.item_id_mask[items]
        keep = known
        if self.training and self.id_dropout > 0:
            keep = keep * (torch.rand(keep.shape, device=keep.device) >= self.id_dropout).to(keep.dtype)
        ids = ids * keep.unsqueeze(-1)
        cold = known == 0
        if bool(cold.any()):  # cold items: the ID row generated from text
            x = self.text_norm(self._features(items))
            generated = x @ self.cold_map[:-1] + self.cold_map[-1]
            ids = ids + (1 - known).unsqueeze(-1) * generated
        vectors = ids + self.text_vectors(items)
        guard = self.new_item_guard_in_use() if bool(cold.any()) else None
        if guard is not None:
            vectors = torch.where(cold.unsqueeze(-1), guard(vectors), vectors)
        return vectors

    def item_vectors_for_features(self, item: int, features: torch.Tensor) -> torch.Tensor:
        """[len(features), dim]: what item `item`'s vector would be with each row of `features` as its LM vector
        (its ID row, or for a cold item the ID row its text generates, plus the projected text): how a text
        attack scores candidate texts without touching the model."""
        x = self.text_norm(features)
        text = self.text_proj(x)
        known = self.item_id_mask[item]
        ids = self.item_embedding.weight[item] * known
        if float(known) != 0.0:
            return ids + text
        vectors = ids + x @ self.cold_map[:-1] + self.cold_map[-1] + text
        guard = self.new_item_guard_in_use()
        return vectors if guard is None else guard(vectors)

    def init_kwargs(self) -> dict:
        return {"n_users": self.n_users, "n_items": self.n_items, "text_dim": self.text_dim, "dim": self.dim,
                "text_dropout": self.text_dropout, "id_dropout": self.id_dropout, "cold_map_reg": self.cold_map_reg}
