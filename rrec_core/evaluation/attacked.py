"""Full-ranking metrics of a model whose user and item tables a white-box attacker has perturbed."""
from __future__ import annotations

import numpy as np
import torch

from rrec_core.attacks import Attack, perturbations, sample_attack_pairs
from rrec_core.config import EvalConfig
from rrec_core.data.split import Split
from rrec_core.evaluation.ranking import full_ranking_per_user
from rrec_core.models import Recommender


def attacked_metrics(model: Recommender, split: Split, attack: Attack, part: str, eval_cfg: EvalConfig,
                     negatives: int = 1, seed: int = 0, device: str | torch.device | None = None) -> dict[str, float]:
    """Full-ranking metrics on `part` after a white-box attack maximizing the BPR loss of its held-out pairs.
    Runs on `device`, by default the model's own."""
    _, per_user = attacked_per_user(model, split, attack, part, eval_cfg, negatives, seed, device)
    return {k: v.mean().item() for k, v in per_user.items()}


def attacked_per_user(model: Recommender, split: Split, attack: Attack, part: str, eval_cfg: EvalConfig,
                      negatives: int = 1, seed: int = 0, device: str | torch.device | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(evaluated users, {metric: [n] per user}) of attacked_metrics."""
    model.eval()
    device = device if device is not None else next(model.parameters()).device
    target, exclude = held_out(split, part)
    known = np.concatenate([split.train, split.valid, split.test])
    pairs = sample_attack_pairs(target, split.n_items, known, negatives, seed).to(device)
    with torch.no_grad():
        U = model.user_vectors(torch.arange(split.n_users, device=device))
        V = model.item_vectors()
    with torch.enable_grad():
        dU, dV = perturbations(U, V, pairs[:, 0], pairs[:, 1], pairs[:, 2], attack)
    Ua, Va = U + dU, V + dV
    return full_ranking_per_user(lambda u: Ua[u] @ Va.T, split.n_users, split.n_items, target, exclude,
                                 eval_cfg.ks, eval_cfg.batch_users, device)


def held_out(split: Split, part: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """(the pairs evaluated, the history masked): valid masks train; test masks train and valid."""
    if part == "valid":
        return split.valid, [split.train]
    if part == "test":
        return split.test, [split.train, split.valid]
    raise ValueError(f"part must be valid or test, not {part!r}")
