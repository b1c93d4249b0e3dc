"""Robustness evaluation: every model, clean and under every attack of the suite, side by side.

For each model: clean test metrics; test metrics under pairwise FGSM / PGD-k (BPR of held-out pairs)
and under the ranking attacks (listwise, margin; restarts, best iterate per user) at each radius (absolute and
norm-relative, L2 and L-inf); the per-user worst case over the suite at each radius, reported first;
and the embedding-norm statistics that make an absolute-radius number interpretable (a model can look
robust by inflating its norms). Beside them, under the other threat model, the per-user attacker
(rrec_core.attacks.targeted) at its own radii.
"""
from __future__ import annotations

import time
from typing import Literal

import torch

from rrec_core.attacks import Attack, norm_stats
from rrec_core.attacks.ranking import RankingAttack, ranking_attack
from rrec_core.attacks.targeted import TargetedAttack, targeted_attack
from rrec_core.config import EvalConfig, RobustnessConfig
from rrec_core.data.split import Split
from rrec_core.evaluation.attacked import attacked_per_user, held_out
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.models import Recommender
from rrec_core.results import (
    AttackOutcome,
    EmbeddingNorms,
    ModelRobustness,
    NormStats,
    PerUserOutcome,
    RobustnessResult,
    WorstCase,
)

KEYS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")  # the attacks are evaluated at k = 10 only


def _radii(cfg: RobustnessConfig, norm: str) -> list[tuple[Literal["absolute", "relative"], float]]:
    scale_l = cfg.linf_scale if norm == "linf" else 1.0
    return ([("absolute", e * scale_l) for e in cfg.eps_absolute]
            + [("relative", e * scale_l) for e in cfg.eps_relative])


def attack_grid(cfg: RobustnessConfig) -> list[Attack | RankingAttack]:
    """The suite: pairwise FGSM / PGD-k at every radius and norm, then the ranking attacks."""
    grid: list[Attack | RankingAttack] = []
    for norm in cfg.norms:
        for scale, eps in _radii(cfg, norm):
            for steps in cfg.steps:
                grid.append(Attack(eps=eps, steps=steps, norm=norm, scale=scale))
    for norm in cfg.ranking_norms:
        scale_l = cfg.linf_scale if norm == "linf" else 1.0
        strong = (({("absolute", e * scale_l) for e in cfg.strong_eps_absolute}
                   | {("relative", e * scale_l) for e in cfg.strong_eps_relative}) if norm in cfg.strong_norms else set())
        for scale, eps in _radii(cfg, norm):
            heavy = (scale, eps) in strong
            steps, restarts = (cfg.strong_steps, cfg.strong_restarts) if heavy else (cfg.ranking_steps,
                                                                                   cfg.ranking_restarts)
            for objective in cfg.ranking_objectives:
                grid.append(RankingAttack(objective, eps, norm=norm, scale=scale, steps=steps, restarts=restarts,
                                          k=cfg.ranking_k, seed=cfg.seed))
            if heavy and "margin" in cfg.ranking_objectives:
                for k in cfg.strong_margin_ks:
                    grid.append(RankingAttack("margin", eps, norm=norm, scale=scale, steps=steps, restarts=2, k=k,
                                              seed=cfg.seed))
    return grid


def per_user_grid(cfg: RobustnessConfig) -> list[TargetedAttack]:
    """The per-user attacker at its radii, in every norm of the suite (L-inf radii x linf_scale)."""
    if not cfg.per_user_attack:
        return []
    out = []
    for norm in cfg.norms:
        scale_l = cfg.linf_scale if norm == "linf" else 1.0
        out += [TargetedAttack(e * scale_l, norm=norm, scale="absolute", steps=cfg.per_user_steps)
                for e in cfg.per_user_eps_absolute]
        out += [TargetedAttack(e * scale_l, norm=norm, scale="relative", steps=cfg.per_user_steps)
                for e in cfg.per_user_eps_relative]
    return out


def evaluate_robustness(models: dict[str, Recommender], split: Split, cfg: RobustnessConfig,
                        eval_cfg: EvalConfig, progress: bool = True) -> tuple[RobustnessResult, dict[str, float]]:
    """(every model clean and under every attack of the suite, with the per-user worst case at each
    radius, on test; seconds per model)."""
    from tqdm.auto import tqdm

    grid = attack_grid(cfg)
    target, exclude = held_out(split, "test")
    out: dict[str, ModelRobustness] = {}
    seconds: dict[str, float] = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.eval()
        clean = evaluate_model(model, split, "test", eval_cfg)
        with torch.no_grad():
            U = model.user_vectors(torch.arange(split.n_users, device=model.user_embedding.weight.device))
            V = model.item_vectors()
        rows = []
        per_radius: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
        for attack in tqdm(grid, desc=f"attack {name}", disable=not progress, unit="attack"):
            if isinstance(attack, RankingAttack):
                r = ranking_attack(U, V, target, exclude, attack, ks=(10,), batch_users=eval_cfg.batch_users)
                per_user = r.per_user
                kind, objective, restarts = "pgd", attack.label, attack.restarts
            else:
                _, per_user = attacked_per_user(model, split, attack, "test", eval_cfg, cfg.negatives, cfg.seed)
                kind, objective, restarts = ("fgsm" if attack.steps == 1 else "pgd"), "bpr", 1
            m = {k: per_user[k].mean().item() for k in KEYS}
            rows.append(AttackOutcome(attack=kind, objective=objective, restarts=restarts, steps=attack.steps, norm=attack.norm, scale=attack.scale,
                                      eps=attack.eps, metrics={k: round(m[k], 6) for k in KEYS},
                                      ndcg_kept=_kept(m["ndcg@10"], clean["ndcg@10"])))
            per_radius.setdefault((attack.norm, attack.scale, attack.eps), []).append(
                (attack.name, per_user["ndcg@10"]))
        targeted = []
        for t in per_user_grid(cfg):
            _, per_user = targeted_attack(U, V, target, exclude, t, ks=(10,), batch_users=eval_cfg.batch_users)
            m = {k: per_user[k].mean().item() for k in KEYS}
            targeted.append(PerUserOutcome(norm=t.norm, scale=t.scale, eps=t.eps, steps=t.steps,
                                           metrics={k: round(m[k], 6) for k in KEYS},
                                           ndcg_kept=_kept(m["ndcg@10"], clean["ndcg@10"])))
        out[name] = ModelRobustness(clean={k: round(clean[k], 6) for k in KEYS},
                                    norms=EmbeddingNorms(user=NormStats(**norm_stats(U)), item=NormStats(**norm_stats(V))),
                                    attacks=rows,
                                    worst_case=[_worst_case(key, suite, clean["ndcg@10"])
                                                for key, suite in per_radius.items()],
                                    per_user=targeted)
        seconds[name] = round(time.perf_counter() - t0, 2)
    return RobustnessResult(grid=[a.name for a in grid], models=out), seconds


def _kept(value: float, clean: float) -> float:
    return round(value / clean, 6) if clean else 0.0


def _worst_case(key: tuple, suite: list[tuple[str, torch.Tensor]], clean: float) -> WorstCase:
    """Per-user minimum of NDCG@10 over the attacks of one radius (every attack evaluates the same users)."""
    norm, scale, eps = key
    names = [n for n, _ in suite]
    stacked = torch.stack([v for _, v in suite])  # [n_attacks, n_users]
    worst, which = stacked.min(dim=0)
    means = stacked.mean(dim=1)
    best_single = int(means.argmin())
    share = torch.bincount(which, minlength=len(names)).float() / max(stacked.shape[1], 1)
    return WorstCase(norm=norm, scale=scale, eps=eps, ndcg=round(worst.mean().item(), 6),
                     ndcg_kept=_kept(worst.mean().item(), clean), strongest_single=names[best_single],
                     strongest_single_ndcg=round(means[best_single].item(), 6),
                     worst_for={n: round(share[i].item(), 4) for i, n in enumerate(names) if share[i] > 0})
