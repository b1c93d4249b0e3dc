"""The recommender interface and its safe on-disk form (safetensors + JSON, never pickles).

A saved model is a directory:
  model.safetensors  every parameter and buffer
  config.json        {"model_type", "init": constructor kwargs, "meta": training facts}
  ids.json           {"user_ids": [...], "item_ids": [...]}: internal index -> raw dataset id
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from rrec_core.io import load_tensors, read_json, save_tensors, write_json


class Recommender(nn.Module):
    """Base of every model. Subclasses define `user_vectors`, `item_vectors` and `init_kwargs`."""

    model_type: str = ""
    optional_state: tuple[str, ...] = ()
    """Buffers a model saved by an older rrec lacks; they keep their constructor defaults."""
    user_embedding: nn.Embedding  # [n_users, d]: perturbed by embedding attacks
    item_embedding: nn.Embedding  # [n_items, d]

    def __init__(self) -> None:
        super().__init__()
        self.user_ids: list[str] = []
        self.item_ids: list[str] = []
        self.meta: dict[str, Any] = {}

    # representations: subclasses may combine the ID tables with side information
    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_embedding(users)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """[len(users), n_items] scores, higher is better."""
        return self.user_vectors(users) @ self.item_vectors().T

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user_vectors(users) * self.item_vectors(items)).sum(-1)

    def bpr_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u = self.user_vectors(users)
        return -torch.nn.functional.logsigmoid((u * self.item_vectors(pos)).sum(-1)
                                               - (u * self.item_vectors(neg)).sum(-1)).mean()

    @property
    def n_users(self) -> int:
        return self.user_embedding.num_embeddings

    @property
    def n_items(self) -> int:
        return self.item_embedding.num_embeddings

    def init_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError


def save_recommender(model: Recommender, path: str | Path) -> Path:
    """Write the model directory; each file lands atomically."""
    path = Path(path)
    tensors = {k: v for k, v in model.state_dict().items()}
    save_tensors(path / "model.safetensors", tensors, metadata={"model_type": model.model_type})
    write_json(path / "ids.json", {"user_ids": model.user_ids, "item_ids": model.item_ids})
    write_json(path / "config.json", {"model_type": model.model_type, "init": model.init_kwargs(), "meta": model.meta})
    return path


def load_recommender(path: str | Path, device: str | torch.device = "cpu") -> Recommender:
    """Rebuild a saved model from its JSON config and safetensors weights (no pickle involved)."""
    from rrec_core.models import MODEL_TYPES

    path = Path(path)
    cfg = read_json(path / "config.json")
    if cfg["model_type"] not in MODEL_TYPES:
        raise ValueError(f"{path / 'config.json'}: unknown model_type {cfg['model_type']!r}")
    model = MODEL_TYPES[cfg["model_type"]](**cfg["init"])
    state = load_tensors(path / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in model.optional_state]
    if missing or unexpected:
        raise ValueError(f"{path / 'model.safetensors'} does not fit {cfg['model_type']}: "
                         f"missing {missing}, unexpected {unexpected}")
    ids = read_json(path / "ids.json")
    model.user_ids, model.item_ids = ids["user_ids"], ids["item_ids"]
    model.meta = cfg.get("meta", {})
    return model.to(device).eval()
