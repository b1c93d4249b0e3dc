"""How an item known only by its text is served: a guard against titles written to be recommended.

A new item (no interactions yet) gets its whole vector from its text (TextHybrid's cold map plus the
text projection), so whoever writes its title sets its scores. Its exposure to the whole audience is
set mostly by one component: the projection of its vector on the users' mean direction (every user's
score moves with it). Measured on ML-100K (docs/text_attacks.md), titles edited toward the text of
popular items raise a new item's HR@50 from 0.007 to 0.07-0.41 through exactly that component.

`NewItemGuard` serves a new item's vector with
  - its component along the users' mean direction set to one level for every new item (a quantile of
    the trained items', the median by default): text says what an item is, not how many people will
    want it, so no title can buy audience-wide exposure; the item earns its own level from
    interactions once it is warm. With `cap_level` the level is a ceiling instead: text may still
    lower a new item's level, and raise it up to the ceiling, not beyond (a softer trade: new items
    keep more of what their text predicts, and an attacker gets more; docs/text_attacks.md);
  - the rest (the taste part, which decides *which* users it reaches) capped in norm at a quantile of
    the trained items' (`rest_quantile`; None: no cap), so no title can out-shout every trained item
    for the users it aims at.

Both are fitted on the trained model's own user and item rows; nothing here sees an attack. Warm items
are served unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NewItemGuard:
    direction: torch.Tensor
    """[d] unit vector: the users' mean direction."""
    level: float
    """The component every new item is served with along `direction`."""
    max_rest_norm: float | None
    """Norm cap of the component orthogonal to `direction` (None: no cap)."""
    cap_level: bool = False
    """False: every new item is served at `level` along `direction`; True: at most at `level`."""

    @classmethod
    def fit(cls, users: torch.Tensor, items: torch.Tensor, rest_quantile: float | None = 0.9,
            level_quantile: float = 0.5, cap_level: bool = False) -> NewItemGuard:
        """users [n_users, d]; items [n_trained, d]: the trained (warm) items' vectors as served. The level is
        the `level_quantile` of the trained items' components along the users' mean direction."""
        if len(items) == 0:
            raise ValueError("NewItemGuard.fit needs the vectors of trained items")
        mean = users.float().mean(0)
        if float(mean.norm()) == 0.0:
            raise ValueError("NewItemGuard.fit: the users' mean vector is zero; no audience direction")
        direction = mean / mean.norm()
        along = items.float() @ direction
        rest = (items.float() - along[:, None] * direction).norm(dim=1)
        cap = None if rest_quantile is None else float(torch.quantile(rest, rest_quantile))
        return cls(direction, float(torch.quantile(along, level_quantile)), cap, cap_level)

    def __call__(self, vectors: torch.Tensor) -> torch.Tensor:
        """[..., d] new items' vectors -> as served."""
        d = self.direction.to(vectors)
        along = vectors @ d
        rest = vectors - along.unsqueeze(-1) * d
        if self.max_rest_norm is not None:
            norm = rest.norm(dim=-1, keepdim=True)
            rest = rest * (self.max_rest_norm / norm.clamp_min(1e-12)).clamp(max=1.0)
        level = along.clamp(max=self.level) if self.cap_level else torch.full_like(along, self.level)
        return rest + level.unsqueeze(-1) * d
