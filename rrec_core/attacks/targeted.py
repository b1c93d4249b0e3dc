"""The per-user (targeted) attacker: every row's budget spent against one user at a time.

The suite's other attacks perturb the user and item tables once for all users (the shared threat model
of APR: the embedding tables are perturbed, every user sees the same tables). An attacker who targets one
user may instead move every item row for that user alone. For a fixed (perturbed) user vector u' the
best such item perturbation is closed form, so only the user's own row is left to optimize:

  L2 ball of radius r_j on item j:  delta_j = sign_j r_j u'/|u'|_2  shifts its score by sign_j r_j |u'|_2;
  L-inf ball:                       delta_j = sign_j r_j sgn(u')    shifts it by sign_j r_j |u'|_1;

sign +1 for every candidate the user has not interacted with, -1 for the user's held-out positives (no
other delta in the ball moves that score further: Cauchy-Schwarz / Hoelder). The user row then takes PGD
on the listwise objective with the item shifts inside (cosine step schedule from half the radius, each
user kept at its worst checked step). The result is the number under this threat model up to the user
row's optimization, which the item shifts dwarf at the radii of the report (docs/robustness.md).

Reported beside the shared worst case, not inside it: the two threat models answer different questions
(how much one perturbation of the tables costs all users, against how much any one user can be hurt).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from rrec_core import ops
from rrec_core.attacks.pairwise import Norm
from rrec_core.evaluation.ranking import FullRanking, _batch_mask, _sorted_pairs


@dataclass(frozen=True)
class TargetedAttack:
    eps: float
    norm: Norm = "l2"
    scale: Literal["absolute", "relative"] = "absolute"
    steps: int = 30
    eval_every: int = 10
    step_fraction: float = 0.5

    @property
    def name(self) -> str:
        return f"per-user-pgd{self.steps}-{self.norm}-{self.scale}-{self.eps:g}"


def row_radius(rows: torch.Tensor, eps: float, scale: str) -> torch.Tensor:
    """[n_rows] the ball's radius per row: eps, or eps x the row's L2 norm (as rrec_core.attacks.pairwise.radius)."""
    if scale == "absolute":
        return torch.full((rows.shape[0],), float(eps))
    return eps * rows.float().norm(dim=1)


def targeted_scores(Uu: torch.Tensor, V: torch.Tensor, r_v: torch.Tensor, sign: torch.Tensor, norm: Norm) -> torch.Tensor:
    """[B, n_items] scores of users Uu once every item row j is moved by sign_j r_j toward (+) or away from
    (-) each user's own vector: the item perturbation that moves each score furthest inside its ball."""
    dual = Uu.norm(dim=1, keepdim=True) if norm == "l2" else Uu.abs().sum(dim=1, keepdim=True)
    return Uu @ V.T + sign * r_v.reshape(1, -1) * dual


def item_perturbation(u: torch.Tensor, r_v: torch.Tensor, sign: torch.Tensor, norm: Norm) -> torch.Tensor:
    """[n_items, d] the item-table perturbation behind targeted_scores for one user vector u [d]."""
    direction = u / u.norm().clamp_min(1e-12) if norm == "l2" else torch.sign(u)
    return sign.reshape(-1, 1) * r_v.reshape(-1, 1) * direction.reshape(1, -1)


def targeted_attack(U: torch.Tensor, V: torch.Tensor, target: np.ndarray, exclude: list[np.ndarray],
                    attack: TargetedAttack, ks=(10,), batch_users: int = 1024
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(evaluated users, {metric: [n_eval] per user}) under the per-user attacker, each user at its worst
    checked step (step 0 is the item shifts alone)."""
    U0, V0 = U.detach().float(), V.detach().float()
    n_users, n_items = U0.shape[0], V0.shape[0]
    target_t = _sorted_pairs(torch.as_tensor(np.asarray(target, dtype=np.int64)).reshape(-1, 2))
    excl_t = _sorted_pairs(torch.cat([torch.as_tensor(np.asarray(e, dtype=np.int64)).reshape(-1, 2)
                                      for e in exclude]) if exclude else torch.empty(0, 2, dtype=torch.long))
    users = torch.unique(target_t[:, 0])
    r_u, r_v = row_radius(U0, attack.eps, attack.scale), row_radius(V0, attack.eps, attack.scale)
    ks = tuple(sorted(set(ks) | {10}))
    dU = torch.zeros_like(U0)  # only the evaluated users' rows move
    blocks = [users[s:s + batch_users] for s in range(0, len(users), batch_users)]
    # per block, built once: the sign of every item's shift, the held-out pairs, the history bias
    signs = [1.0 - 2.0 * _batch_mask(target_t, b, n_users, n_items).float() for b in blocks]
    pairs = [(sg < 0).nonzero(as_tuple=True) for sg in signs]
    biases = [torch.zeros(sg.shape).masked_fill_(_batch_mask(excl_t, b, n_users, n_items), float("-inf"))
              for b, sg in zip(blocks, signs)]
    block_of = {int(b[0]): j for j, b in enumerate(blocks)}

    ranking = FullRanking(n_users, n_items, target, exclude, ks, batch_users)

    def evaluate() -> dict[str, torch.Tensor]:
        Ua = U0 + dU
        # the evaluation scores the same blocks of the same sorted users
        return ranking.per_user(lambda u: targeted_scores(Ua[u], V0, r_v, signs[block_of[int(u[0])]], attack.norm))

    worst = evaluate()
    for step in range(attack.steps):
        frac = attack.step_fraction * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / max(attack.steps, 1))))
        for j, block in enumerate(blocks):
            row, col = pairs[j]
            d = dU[block].clone().requires_grad_(True)
            scores = targeted_scores(U0[block] + d, V0, r_v, signs[j], attack.norm) + biases[j]
            loss = -(scores.log_softmax(dim=1)[row, col]).sum()
            (g,) = torch.autograd.grad(loss, d)
            with torch.no_grad():
                dU[block] = ops.pgd_step(d.detach(), g, r_u[block] * frac, r_u[block], attack.norm)
        if (step + 1) % attack.eval_every == 0 or step + 1 == attack.steps:
            now = evaluate()
            worse = now["ndcg@10"] < worst["ndcg@10"]
            worst = {key: torch.where(worse, now[key], worst[key]) for key in worst}
    return users, worst
