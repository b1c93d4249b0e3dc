"""PGD aimed at the ranked list: the attack a robustness number has to survive.

NDCG@10 is a property of each user's full ranking, so these attacks optimize the ranking itself,
not a sampled BPR pair:

  listwise  maximize the softmax cross-entropy of each held-out positive over the user's candidates
            (every item outside the history): push the positives down against all items at once;
  margin    maximize softplus(s_k - s_pos) for each held-out positive, s_k the k-th best score among
            the user's other candidates: push each positive below the top-k cut-off, and stop pushing
            one that is already far below it.

Both perturb every user row and every item row (as the pairwise attacks of the robustness grid),
inside the same balls: per-row L2 or L-inf, absolute or relative to each row's norm. What makes them
strong (Croce & Hein's lessons for APGD): random restarts, the best iterate kept per user (an attack
never reports a weaker point than one it reached), and a step size that starts large and shrinks (cosine).

Best iterate per user, not per attack: each user is reported at the checked iterate (any step, any
restart) that hurt it most, as AutoAttack keeps each input's own worst point. That is the threat model
of the report's per-user worst case over the suite already (each user counted at the attack that hurt
it most, so at its own perturbation); kept per attack, an iterate that is best on average hides the
users an earlier or later iterate ranked worse, and an independent attacker that keeps them finds a
lower number (bench/results/attack_strength_cpu_2026-12-07.md).
The objective is computed over blocks of users, so memory is O(block x items) at any catalogue size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from rrec_core import ops
from rrec_core.attacks.pairwise import Norm, radius
from rrec_core.evaluation.ranking import FullRanking, _batch_mask, _sorted_pairs

Objective = Literal["listwise", "margin"]
TERMS_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class RankingAttack:
    objective: Objective
    eps: float
    norm: Norm = "l2"
    scale: Literal["absolute", "relative"] = "absolute"
    steps: int = 50
    restarts: int = 2
    """The first start is delta = 0, the others uniform in the ball; the best over all is kept."""
    step_fraction: float = 0.5
    """First step radius as a fraction of eps; it decays to 1% of that over the steps (cosine)."""
    k: int = 10
    """Cut-off of the margin objective."""
    eval_every: int = 5
    """Steps between best-iterate checks (and the last step): the full-ranking NDCG@10 of the iterate."""
    seed: int = 0

    @property
    def name(self) -> str:
        return f"{self.label}-pgd{self.steps}x{self.restarts}-{self.norm}-{self.scale}-{self.eps:g}"

    @property
    def label(self) -> str:
        """The objective, with the margin's cut-off where it is not the top-10 one (margin@1: the best competitor)."""
        return f"margin@{self.k}" if self.objective == "margin" and self.k != 10 else self.objective


@dataclass
class RankingAttackResult:
    dU: torch.Tensor  # [n_users, d] the single perturbation with the lowest mean NDCG@10 found
    dV: torch.Tensor  # [n_items, d]
    users: torch.Tensor  # [n_eval] evaluated users (those with held-out pairs), sorted
    per_user: dict[str, torch.Tensor]  # metric -> [n_eval], each user at its own worst checked iterate
    trace: list[float]  # mean NDCG@10 at every check, all restarts in order
    best_iterate_ndcg: float = float("nan")  # mean NDCG@10 at dU, dV (>= per_user["ndcg@10"].mean())


@dataclass(frozen=True)
class BlockTerms:
    """What the objective of one block of users needs beside its scores; the same at every step, so the
    attack builds it once per block (while it fits TERMS_CACHE_BYTES) instead of once per step."""
    row: torch.Tensor  # [P] block row of each held-out pair
    col: torch.Tensor  # [P] its item
    bias: torch.Tensor  # [B, n_items] float: -inf on the items that are not candidates (history; for margin
    # also the held-out items), 0 elsewhere. Added, not masked: the add and its backward are the cheapest way
    # to exclude items on CPU (bench/explore/ranking_step.py)


def block_terms(users: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor, n_users: int, n_items: int,
                objective: Objective) -> BlockTerms:
    hist, pos = block_masks(users, target, exclude, n_users, n_items)
    row, col = pos.nonzero(as_tuple=True)  # one entry per held-out pair
    not_candidate = hist if objective == "listwise" else hist | pos
    return BlockTerms(row, col, torch.zeros(not_candidate.shape).masked_fill_(not_candidate, float("-inf")))


def ranking_objective(U: torch.Tensor, V: torch.Tensor, users: torch.Tensor, target: torch.Tensor,
                      exclude: torch.Tensor, objective: Objective, k: int = 10,
                      terms: BlockTerms | None = None) -> torch.Tensor:
    """Sum over the held-out pairs of `users` of the attack objective (higher = worse ranking).

    U [n_users, d], V [n_items, d] (perturbed); target / exclude: user-sorted [n, 2] pairs; terms: the
    block's BlockTerms when the caller keeps them between steps."""
    n_users, n_items = U.shape[0], V.shape[0]
    if objective not in ("listwise", "margin"):
        raise ValueError(f"unknown ranking objective {objective!r}")
    scores = U[users] @ V.T  # [B, n_items]
    if terms is None:
        terms = block_terms(users, target, exclude, n_users, n_items, objective)
    row, col = terms.row, terms.col
    candidates = scores + terms.bias
    if objective == "listwise":
        return -(candidates.log_softmax(dim=1)[row, col]).sum()
    kk = min(k, n_items - 1)
    kth = candidates.topk(kk, dim=1).values[:, -1]  # [B]; its gradient lifts the k-th competitor
    return F.softplus(kth[row] - scores[row, col]).sum()


def ranking_objective_grad(Ua: torch.Tensor, Va: torch.Tensor, users: torch.Tensor, terms: BlockTerms,
                           objective: Objective, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """(d objective / d Ua[users] [B, d], d objective / d Va [n_items, d]) of `ranking_objective`, in closed form.

    Both objectives are sums of functions of the score matrix S = Ua[users] Va^T, so with G = dL/dS the
    gradients are G Va and G^T Ua[users]; G is written directly (listwise: each row's softmax over its
    candidates times its number of held-out pairs, minus one at each pair; margin: -sigmoid(s_k - s_pos) at
    each pair, their row sum at the row's k-th candidate, where topk's backward puts it, so the margin's
    products are sparse). Autograd builds the same G through log_softmax / topk / gather backward, and a
    dense one for margin, at ~1.6x / ~2x the time (bench/explore/ranking_step.py): the attack's steps are
    almost all this function."""
    if objective not in ("listwise", "margin"):
        raise ValueError(f"unknown ranking objective {objective!r}")
    Ub = Ua.index_select(0, users)
    scores = Ub @ Va.T  # [B, n_items]
    n_items = scores.shape[1]
    row, col = terms.row, terms.col
    flat_pairs = row * n_items + col
    candidates = scores + terms.bias
    if objective == "listwise":
        n_pos = torch.bincount(row, minlength=len(users)).to(scores.dtype)
        G = torch.softmax(candidates, dim=1).mul_(n_pos[:, None])
        G.view(-1).index_add_(0, flat_pairs, torch.full((len(row),), -1.0, dtype=scores.dtype))
    else:
        top = candidates.topk(min(k, n_items - 1), dim=1)
        kth, kth_item = top.values[:, -1], top.indices[:, -1]
        sig = torch.sigmoid(kth[row] - scores.view(-1)[flat_pairs])
        per_row = torch.zeros(len(users), dtype=scores.dtype).index_add_(0, row, sig)
        # G has one entry per pair and one per row: the products are gathers and scatters, not matmuls
        g_block = (per_row[:, None] * Va.index_select(0, kth_item)).index_add_(
            0, row, -sig[:, None] * Va.index_select(0, col))
        g_items = torch.zeros_like(Va).index_add_(0, kth_item, per_row[:, None] * Ub)
        return g_block, g_items.index_add_(0, col, -sig[:, None] * Ub.index_select(0, row))
    return G @ Va, G.T @ Ub


def block_masks(users: torch.Tensor, target: torch.Tensor, exclude: torch.Tensor, n_users: int, n_items: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(history [B, n_items], held-out pairs [B, n_items]) dense bool masks of a block of sorted users."""
    return _batch_mask(exclude, users, n_users, n_items), _batch_mask(target, users, n_users, n_items)


def _random_start(shape, eps, norm: Norm, gen: torch.Generator) -> torch.Tensor:
    d = torch.randn(shape, generator=gen)
    if norm == "l2":
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        r = torch.rand(shape[0], 1, generator=gen)
        e = eps if not isinstance(eps, torch.Tensor) else eps.reshape(-1, 1)
        return d * r * e
    e = eps if not isinstance(eps, torch.Tensor) else eps.reshape(-1, 1)
    return (2 * torch.rand(shape, generator=gen) - 1) * e


def ranking_attack(U: torch.Tensor, V: torch.Tensor, target: np.ndarray, exclude: list[np.ndarray],
                   attack: RankingAttack, ks=(10,), batch_users: int = 1024) -> RankingAttackResult:
    """The strongest perturbation of (U, V) the attack finds against the ranking of `target`.

    U, V: the model's user and item vectors (constants); target: held-out pairs; exclude: history."""
    U0, V0 = U.detach().float(), V.detach().float()
    n_users, n_items = U0.shape[0], V0.shape[0]
    target_t = _sorted_pairs(torch.as_tensor(np.asarray(target, dtype=np.int64)).reshape(-1, 2))
    excl_t = _sorted_pairs(torch.cat([torch.as_tensor(np.asarray(e, dtype=np.int64)).reshape(-1, 2)
                                      for e in exclude]) if exclude else torch.empty(0, 2, dtype=torch.long))
    users = torch.unique(target_t[:, 0])
    eps_u, eps_v = radius(U0, _as_pairwise(attack)), radius(V0, _as_pairwise(attack))
    gen = torch.Generator().manual_seed(attack.seed)
    ks = tuple(sorted(set(ks) | {10}))

    ranking = FullRanking(n_users, n_items, target, exclude, ks, batch_users)

    def evaluate(dU, dV):
        Ua, Va = U0 + dU, V0 + dV
        return ranking.users, ranking.per_user(lambda u: Ua[u] @ Va.T)

    blocks = [users[s:s + batch_users] for s in range(0, len(users), batch_users)]
    # the terms do not change between steps: keep them while they are small (a float per score), else
    # rebuild each step so memory stays O(block x items) at any catalogue size
    keep_terms = 4 * len(users) * n_items <= TERMS_CACHE_BYTES
    terms = ([block_terms(b, target_t, excl_t, n_users, n_items, attack.objective) for b in blocks]
             if keep_terms else None)
    best_users, worst = evaluate(torch.zeros_like(U0), torch.zeros_like(V0))  # per user, its worst point so far
    best_score = worst["ndcg@10"].mean().item()
    best_dU, best_dV = torch.zeros_like(U0), torch.zeros_like(V0)
    trace = [best_score]
    for restart in range(attack.restarts):
        if restart == 0:
            dU, dV = torch.zeros_like(U0), torch.zeros_like(V0)
        else:
            dU = _random_start(U0.shape, eps_u, attack.norm, gen)
            dV = _random_start(V0.shape, eps_v, attack.norm, gen)
        for step in range(attack.steps):
            Ua, Va = U0 + dU, V0 + dV
            gU, gV = torch.zeros_like(U0), torch.zeros_like(V0)
            for j, block in enumerate(blocks):
                t = terms[j] if terms is not None else block_terms(block, target_t, excl_t, n_users, n_items,
                                                                     attack.objective)
                g_block, g_items = ranking_objective_grad(Ua, Va, block, t, attack.objective, attack.k)
                gU.index_add_(0, block, g_block)
                gV += g_items
            # cosine decay of the step radius from step_fraction * eps to 1% of it
            frac = attack.step_fraction * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / max(attack.steps, 1))))
            ops.pgd_step_(dU, gU, eps_u * frac, eps_u, attack.norm)  # best_dU / best_dV are clones
            ops.pgd_step_(dV, gV, eps_v * frac, eps_v, attack.norm)
            if (step + 1) % attack.eval_every == 0 or step + 1 == attack.steps:
                _, now = evaluate(dU, dV)
                score = now["ndcg@10"].mean().item()
                trace.append(score)
                if score < best_score:
                    best_score, best_dU, best_dV = score, dU.clone(), dV.clone()
                worse = now["ndcg@10"] < worst["ndcg@10"]  # [n_eval]; every metric of a user from one iterate
                worst = {key: torch.where(worse, now[key], worst[key]) for key in worst}
    return RankingAttackResult(best_dU, best_dV, best_users, worst, trace, best_score)


def _as_pairwise(attack: RankingAttack):
    from rrec_core.attacks.pairwise import Attack

    return Attack(eps=attack.eps, norm=attack.norm, scale=attack.scale)


def inbatch_listwise_perturbations(U: torch.Tensor, V: torch.Tensor, u_idx: torch.Tensor, p_idx: torch.Tensor,
                                   eps_u, eps_v, steps: int, norm: Norm, step_fraction: float | None = None
                                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(dU, dV) maximizing the listwise cross-entropy of each batch pair's positive over the batch's items
    (the training-time form of the listwise attack: in-batch candidates keep it O(batch^2), not O(items)).

    U [n_u, d] unique batch users, V [n_v, d] unique batch items, u_idx / p_idx [B] into them; constants."""
    U0, V0 = U.detach(), V.detach()
    dU, dV = torch.zeros_like(U0), torch.zeros_like(V0)
    frac = step_fraction if step_fraction is not None else (1.0 if steps == 1 else 2.5 / steps)
    for _ in range(steps):
        dU.requires_grad_(True)
        dV.requires_grad_(True)
        with torch.enable_grad():
            logits = (U0 + dU).index_select(0, u_idx) @ (V0 + dV).T  # [B, n_v]
            loss = F.cross_entropy(logits, p_idx)
            gU, gV = torch.autograd.grad(loss, (dU, dV))
        with torch.no_grad():
            dU = ops.pgd_step(dU.detach(), gU, eps_u * frac, eps_u, norm)
            dV = ops.pgd_step(dV.detach(), gV, eps_v * frac, eps_v, norm)
    return dU.detach(), dV.detach()


CatalogueObjective = Literal["listwise", "trades"]


def catalogue_logits(U: torch.Tensor, V: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores of each row's user over the whole catalogue, the masked items (history) at -inf.

    U [n_u, d], V [n_items, d]; rows [R] index U; mask [R, n_items]."""
    return (U.index_select(0, rows) @ V.T).masked_fill(mask, float("-inf"))


def catalogue_objective(logits: torch.Tensor, objective: CatalogueObjective, pos: torch.Tensor | None = None,
                        reference: torch.Tensor | None = None) -> torch.Tensor:
    """Per row: the listwise cross-entropy of `pos` [R], or (trades) KL(softmax(reference) || softmax(logits))."""
    if objective == "listwise":
        assert pos is not None
        return F.cross_entropy(logits, pos, reduction="none")
    assert reference is not None
    # masked items are -inf in both: zero them before the difference, or inf - inf poisons the gradient
    masked = ~torch.isfinite(reference)
    logp_ref = reference.log_softmax(1).masked_fill(masked, 0.0)
    logp = logits.log_softmax(1).masked_fill(masked, 0.0)
    return (logp_ref.exp().masked_fill(masked, 0.0) * (logp_ref - logp)).sum(1)


def catalogue_perturbations(U: torch.Tensor, V: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor,
                            objective: CatalogueObjective, eps_u, eps_v, steps: int, norm: Norm,
                            step_fraction: float | None = None, pos: torch.Tensor | None = None,
                            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(dU, dV) maximizing the catalogue objective of every row: the training-time form of the listwise
    evaluation attack (every item a candidate, history masked), or TRADES' consistency term.

    U [n_u, d] the batch's users, V [n_items, d] every item; constants. TRADES starts from a small random
    point (its objective has zero gradient at delta = 0), listwise from delta = 0."""
    U0, V0 = U.detach(), V.detach()
    reference = catalogue_logits(U0, V0, rows, mask) if objective == "trades" else None
    if objective == "trades":
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        dU = 0.1 * _random_start(U0.shape, eps_u, norm, gen).to(U0)
        dV = 0.1 * _random_start(V0.shape, eps_v, norm, gen).to(V0)
    else:
        dU, dV = torch.zeros_like(U0), torch.zeros_like(V0)
    frac = step_fraction if step_fraction is not None else (1.0 if steps == 1 else 2.5 / steps)
    for _ in range(steps):
        dU.requires_grad_(True)
        dV.requires_grad_(True)
        with torch.enable_grad():
            loss = catalogue_objective(catalogue_logits(U0 + dU, V0 + dV, rows, mask), objective, pos, reference).sum()
            gU, gV = torch.autograd.grad(loss, (dU, dV))
        with torch.no_grad():
            dU = ops.pgd_step(dU.detach(), gU, eps_u * frac, eps_u, norm)
            dV = ops.pgd_step(dV.detach(), gV, eps_v * frac, eps_v, norm)
    return dU.detach(), dV.detach()
