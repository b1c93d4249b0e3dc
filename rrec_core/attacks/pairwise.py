"""Adversarial perturbations of embeddings: FGSM and PGD/BIM inside a true ε-ball.

One routine serves both sides: the robustness evaluation attacks a trained model's full user and
item tables, and adversarial training (APR / PGD-AT) attacks the rows of a batch. In both cases the
perturbation is indexed by *unique* row, so a row that occurs several times is moved once, by the
perturbation of its summed gradient (APR's semantics: the table is perturbed, not the occurrences).

Radius: `absolute` uses ε as given; `relative` scales it per row by the row's own L2 norm, so a model
cannot look robust merely by inflating its embedding norms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from rrec_core import ops

Norm = Literal["l2", "linf"]


@dataclass(frozen=True)
class Attack:
    eps: float
    steps: int = 1  # 1 = FGSM; >1 = PGD/BIM with projection after every step
    norm: Norm = "l2"
    scale: Literal["absolute", "relative"] = "absolute"
    step_fraction: float | None = None  # per-step radius as a fraction of eps; default 2.5/steps (Madry et al.)
    targets: Literal["both", "users", "items"] = "both"
    delta_penalty: float = 0.0  # λ_δ: the adversary maximizes L - λ_δ‖δ‖² (0: hard ball only)

    @property
    def name(self) -> str:
        kind = "fgsm" if self.steps == 1 else f"pgd{self.steps}"
        return f"{kind}-{self.norm}-{self.scale}-{self.eps:g}"


def bpr_loss(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BPR loss of the pairs; with `weights` [B], their weighted mean (weights need not sum to 1)."""
    nll = -F.logsigmoid((u * p).sum(-1) - (u * n).sum(-1))
    if weights is None:
        return nll.mean()
    return (weights * nll).sum() / weights.sum().clamp_min(1e-12)


def radius(rows: torch.Tensor, attack: Attack) -> float | torch.Tensor:
    """ε for each row: a scalar, or [n_rows] when relative to the row norms."""
    if attack.scale == "absolute":
        return attack.eps
    return attack.eps * rows.detach().float().norm(dim=-1)


def perturbations(
    U: torch.Tensor,  # [n_u, d] unique user rows
    V: torch.Tensor,  # [n_v, d] unique item rows
    u_idx: torch.Tensor,  # [B] index into U per pair
    p_idx: torch.Tensor,  # [B] positive item index into V
    n_idx: torch.Tensor,  # [B] negative item index into V
    attack: Attack,
    user_scale: torch.Tensor | None = None,  # [n_u] multiplier of each user row's radius (VAT-style)
) -> tuple[torch.Tensor, torch.Tensor]:
    """(δU, δV) maximizing the BPR loss of the pairs within the ball; constants (no graph to U, V)."""
    U0, V0 = U.detach(), V.detach()
    eps_u, eps_v = radius(U0, attack), radius(V0, attack)
    if user_scale is not None:
        eps_u = eps_u * user_scale
    dU = torch.zeros_like(U0)
    dV = torch.zeros_like(V0)
    on_u = attack.targets in ("both", "users")
    on_v = attack.targets in ("both", "items")
    frac = attack.step_fraction if attack.step_fraction is not None else (1.0 if attack.steps == 1 else 2.5 / attack.steps)
    lam = attack.delta_penalty
    if attack.steps == 1 and lam:
        # FGSM with a penalty: from delta = 0 the penalty's gradient is 0, so take the maximizer of the
        # linearized objective g.delta - lam ||delta||^2 in the ball instead, row by row
        gU, gV = bpr_gradients(U0, V0, u_idx, p_idx, n_idx)
        return (_penalized_step(gU, eps_u, lam, attack.norm) if on_u else dU,
                _penalized_step(gV, eps_v, lam, attack.norm) if on_v else dV)
    for _ in range(attack.steps):
        gU, gV = bpr_gradients(U0 + dU, V0 + dV, u_idx, p_idx, n_idx)
        if lam:  # the adversary maximizes L - lam * ||delta||^2 (L: the mean BPR loss of the pairs)
            gU, gV = gU - 2.0 * lam * dU, gV - 2.0 * lam * dV
        if on_u:
            dU = ops.pgd_step(dU, gU, eps_u * frac, eps_u, attack.norm)
        if on_v:
            dV = ops.pgd_step(dV, gV, eps_v * frac, eps_v, attack.norm)
    return dU, dV


def _penalized_step(g: torch.Tensor, eps, lam: float, norm: str) -> torch.Tensor:
    """argmax over the ball of g.delta - lam ||delta||^2: l2, the gradient direction at radius
    min(eps, ||g|| / 2 lam); linf, clamp(g / 2 lam, -eps, eps)."""
    if norm == "l2":
        r = (g.float().norm(dim=-1) / (2.0 * lam)).clamp(max=eps) if not isinstance(eps, torch.Tensor) else \
            torch.minimum(g.float().norm(dim=-1) / (2.0 * lam), eps)
        return ops.fgsm(g, r, "l2")
    return ops.project(g / (2.0 * lam), eps, "linf")


def bpr_gradients(U: torch.Tensor, V: torch.Tensor, u_idx: torch.Tensor, p_idx: torch.Tensor,
                  n_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form gradient of the mean BPR loss with respect to the U and V rows.

    With x = u.(p - n) and L = -mean(log sigmoid(x)): dL/dx = -sigmoid(-x)/B, so dL/du = w (p - n),
    dL/dp = w u, dL/dn = -w u, summed per row with index_add. Half the time of autograd, which
    scatters through index_put; the attack loop runs it thousands of times per evaluation.
    """
    with torch.no_grad():
        u, p, n = U[u_idx], V[p_idx], V[n_idx]
        diff = p - n
        w = (-torch.sigmoid(-(u * diff).sum(-1)) / max(len(u_idx), 1)).unsqueeze(-1)
        gU = torch.zeros_like(U).index_add_(0, u_idx, w * diff)
        wu = w * u
        gV = torch.zeros_like(V).index_add_(0, p_idx, wu).index_add_(0, n_idx, -wu)
    return gU, gV


def sample_attack_pairs(pairs, n_items: int, known, negatives: int = 1, seed: int = 0) -> torch.Tensor:
    """[B*negatives, 3] (user, positive, negative) from held-out pairs; negatives avoid every known pair."""
    from rrec_core.training.sampling import NegativeSampler

    gen = torch.Generator().manual_seed(seed)
    sampler = NegativeSampler(known, n_items, gen)
    p = torch.as_tensor(np.array(pairs, dtype=np.int64)).repeat(negatives, 1)
    return torch.cat([p, sampler.sample(p[:, 0])[:, None]], dim=1)


def norm_stats(t: torch.Tensor) -> dict[str, float]:
    n = t.detach().float().norm(dim=-1)
    if n.numel() == 0:
        return {}
    return {"mean": float(n.mean()), "median": float(n.median()), "p95": float(n.quantile(0.95)), "max": float(n.max())}
