"""The poisoning grid: attack strength and defences over attacks x fake ratios x seeds, one cell at a time.

The poisoning_evaluation stage measures one setting (params.yaml `poisoning`: one seed, one fake ratio). A
defence is worth what it does on settings it was not built for, and an attack's strength varies with its
target (docs/poisoning.md: HR@50 0.011-0.125 over three targets), so the grid re-runs the same measurement
over every combination of `poisoning_grid.attacks`, `fake_ratios` and `seeds` (each seed draws its own
targets and the attack's randomness), plus one clean cell per seed (`attack == "none"`, the reference for
promotion and for the clean cost of each defence).

Cells are independent: `evaluate_grid_cell` is all one cell needs, so the orchestration can run them
in parallel processes (Dagster's dynamic outputs under the multiprocess executor, or one pod per cell
on Kubernetes; docs/scale.md). `summarize_grid` folds the cells into one row per (attack, fake ratio,
arm): mean / min / max over seeds, promotion over the same seed's clean cell, and each defence's share
of the undefended promotion.

Arms (`poisoning_grid.arms`), each trained from scratch on the cell's data:
  undefended   MF-BPR (pretrain.mf_bpr) on the poisoned data
  adversarial  that model, then the adversarial stage's fine-tuning (params.yaml `adversarial`, no GAN weights)
  robust       that model, then fine-tuning with `poisoning.robust` laid over `adversarial` (VAT radii)
  screened     MF-BPR on the poisoned data minus the rows of the users the screen flags
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from rrec_core.config import (
    AdversarialConfig,
    EvalConfig,
    MFConfig,
    PoisoningEvalConfig,
    PoisoningGridConfig,
    ScreenConfig,
)
from rrec_core.data.split import Split

CLEAN = "none"
MEASURES = ("target_hit@10", "target_hit@50", "target_exposure@50", "target_percentile", "ndcg@10")


@dataclass(frozen=True)
class GridCell:
    attack: str  # an attack of PoisoningEvalConfig, or "none" (the seed's clean reference)
    fake_ratio: float
    seed: int

    @property
    def key(self) -> str:
        """A name Dagster accepts as a mapping key ([A-Za-z0-9_]): gradient_1pct_seed2, none_seed2."""
        if self.attack == CLEAN:
            return f"{CLEAN}_seed{self.seed}"
        pct = f"{self.fake_ratio * 100:g}".replace(".", "p")
        return f"{self.attack}_{pct}pct_seed{self.seed}"

    @classmethod
    def from_key(cls, key: str, cfg: PoisoningGridConfig) -> "GridCell":
        for cell in grid_cells(cfg):
            if cell.key == key:
                return cell
        raise KeyError(f"{key!r} is not a cell of the poisoning grid {[c.key for c in grid_cells(cfg)]}")


def grid_cells(cfg: PoisoningGridConfig) -> list[GridCell]:
    """Every cell: a clean one per seed, then attacks x fake ratios x seeds."""
    cells = [GridCell(CLEAN, 0.0, s) for s in cfg.seeds]
    cells += [GridCell(a, r, s) for a in cfg.attacks for r in cfg.fake_ratios for s in cfg.seeds]
    return cells


def _real_ndcg(model, split: Split, n_real: int) -> float:
    from rrec_core.evaluation.ranking import evaluate_model

    real = replace(split, test=split.test[split.test[:, 0] < n_real], valid=split.valid[split.valid[:, 0] < n_real])
    return evaluate_model(model, real, "test", EvalConfig(ks=(10,)))["ndcg@10"]


def evaluate_grid_cell(interactions: pd.DataFrame, split: Split, cell: GridCell, cfg: PoisoningGridConfig,
                       poisoning: PoisoningEvalConfig, screen: ScreenConfig, pre_cfg: MFConfig,
                       adv_cfg: AdversarialConfig, gan_result=None, threads: int | None = None) -> dict[str, Any]:
    """One cell: inject `cell.attack` (none: the clean data), train every arm, measure on real users.

    interactions: the validated real interactions (what the attacker sees and the screen screens); split:
    their train/valid/test split. Returns a JSON-ready dict (the arms' measures, the screen's detection,
    the targets, seconds, and where and when the cell ran)."""
    from rrec_core.evaluation.poisoning import inject, poisoned_split
    from rrec_core.poisoning.metrics import _history_frame as _history
    from rrec_core.poisoning.metrics import detection_metrics, poisoning_metrics
    from rrec_core.poisoning.screen import screen_users
    from rrec_core.poisoning.shilling import select_targets
    from rrec_core.training.adversarial import adversarial_finetune
    from rrec_core.training.loop import build_model, train_recommender

    if threads is not None:
        torch.set_num_threads(max(1, threads))
    started = time.time()
    t0 = time.perf_counter()
    real = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    targets = [str(t) for t in select_targets(real, cfg.n_targets, quantiles=cfg.target_quantiles,
                                              min_count=cfg.target_min_count, seed=cell.seed)]
    real_users = [str(u) for u in split.user_ids]
    n_real = split.n_users
    seconds: dict[str, float] = {}
    if cell.attack == CLEAN:
        poisoned_rows, fake_users, fakes = real, [], None
        data = split
    else:
        pcfg = poisoning.model_copy(update={"fake_ratio": cell.fake_ratio, "seed": cell.seed})
        p = inject(cell.attack, interactions, targets, pcfg, gan_result)
        poisoned_rows, fake_users, fakes = p.interactions, list(p.fake_users), p.injected
        data = poisoned_split(split, fakes)
    seconds["inject"] = round(time.perf_counter() - t0, 1)

    ev = EvalConfig(ks=(10,))

    def pretrain(s: Split):
        return train_recommender(build_model("mf_bpr", s, pre_cfg), s, pre_cfg, ev, progress=False).model

    arms: dict[str, dict[str, float]] = {}
    detection = None
    undefended = None

    def measure(model, s: Split) -> dict[str, float]:
        hit = poisoning_metrics(model, targets, _history(s), users=real_users)
        return {**hit, "ndcg@10": _real_ndcg(model, s, n_real)}

    for arm in cfg.arms:
        t0 = time.perf_counter()
        if arm in ("undefended", "adversarial", "robust") and undefended is None:
            undefended = pretrain(data)
        if arm == "undefended":
            arms[arm] = measure(undefended, data)
        elif arm in ("adversarial", "robust"):
            assert undefended is not None
            acfg = adv_cfg if arm == "adversarial" else AdversarialConfig.model_validate(
                {**adv_cfg.model_dump(), **poisoning.robust})
            acfg = acfg.model_copy(update={"gan_weighting": False})
            model = adversarial_finetune(undefended, data, acfg, ev, progress=False).model
            arms[arm] = measure(model, data)
        elif arm == "screened":
            flagged = list(screen_users(poisoned_rows, screen).flagged)
            detection = detection_metrics(flagged, fake_users)
            kept = poisoned_split(split, fakes if fakes is not None else real.iloc[:0], drop_users=flagged)
            arms[arm] = measure(pretrain(kept), kept)
        else:
            raise ValueError(f"unknown poisoning_grid arm {arm!r}")
        seconds[arm] = round(time.perf_counter() - t0, 1)
    return {"cell": cell.key, "attack": cell.attack, "fake_ratio": cell.fake_ratio, "seed": cell.seed,
            "targets": targets, "n_fake": len(fake_users), "arms": arms, "screen": detection, "seconds": seconds,
            "worker": {"pid": os.getpid(), "threads": torch.get_num_threads(), "started": started,
                       "finished": time.time()}}


def summarize_grid(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (attack, fake ratio, arm): mean / min / max over seeds of every measure; promotion
    (HR@50 and HR@10 over the same seed's clean cell, same arm); the arm's promotion as a share of the
    undefended one (ratio of the means over seeds; None where the undefended attack promoted nothing) and
    its clean NDCG@10 against the undefended clean model."""
    clean = {(c["seed"]): c["arms"] for c in cells if c["attack"] == CLEAN}
    rows: list[dict[str, Any]] = []
    groups: dict[tuple[str, float], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["attack"], c["fake_ratio"]), []).append(c)
    for (attack, ratio), group in groups.items():
        arms = list(dict.fromkeys(a for c in group for a in c["arms"]))
        promo: dict[str, dict[str, float]] = {}
        for arm in arms:
            vals = {m: np.array([c["arms"][arm][m] for c in group], dtype=float) for m in MEASURES}
            row: dict[str, Any] = {"attack": attack, "fake_ratio": ratio, "arm": arm, "seeds": len(group)}
            for m, v in vals.items():
                row[m] = float(v.mean())
                row[f"{m}_min"], row[f"{m}_max"] = float(v.min()), float(v.max())
            if attack != CLEAN:
                for k in (10, 50):
                    gain = [c["arms"][arm][f"target_hit@{k}"] - clean[c["seed"]][arm][f"target_hit@{k}"]
                            for c in group if c["seed"] in clean and arm in clean[c["seed"]]]
                    row[f"promotion@{k}"] = float(np.mean(gain)) if gain else None
                promo[arm] = {k: row[k] for k in ("promotion@10", "promotion@50")}
                screens = [c["screen"] for c in group if c.get("screen")]
                if arm == "screened" and screens:
                    row["screen_precision"] = float(np.mean([s["precision"] for s in screens]))
                    row["screen_recall"] = float(np.mean([s["recall"] for s in screens]))
            else:
                base = [c["arms"]["undefended"]["ndcg@10"] for c in group if "undefended" in c["arms"]]
                row["ndcg@10_cost"] = (1 - row["ndcg@10"] / float(np.mean(base))) if base else None
                screens = [c["screen"] for c in group if c.get("screen")]
                if arm == "screened" and screens:
                    row["clean_users_flagged"] = float(np.mean([s["flagged"] for s in screens]))
            rows.append(row)
        und = promo.get("undefended")
        for row in rows[-len(arms):]:
            if attack == CLEAN or und is None:
                continue
            u = und["promotion@50"]
            p = row.get("promotion@50")
            row["promotion@50_kept"] = (max(p, 0.0) / u) if (u is not None and p is not None and u > 0) else None
    return rows


def grid_markdown(rows: list[dict[str, Any]]) -> str:
    """The summary as the report, the docs and the Dagster metadata show it."""
    lines = ["| attack | fake ratio | arm | seeds | target HR@10 | target HR@50 (min-max) | promotion@50 | kept vs "
             "undefended | real NDCG@10 | screen |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        kept, promo = r.get("promotion@50_kept"), r.get("promotion@50")
        screen = ""
        if "screen_recall" in r:
            screen = f"precision {r['screen_precision']:.2f}, recall {r['screen_recall']:.2f}"
        elif "clean_users_flagged" in r:
            screen = f"{r['clean_users_flagged']:g} real users flagged"
        lines.append(
            f"| {r['attack']} | {r['fake_ratio']:g} | {r['arm']} | {r['seeds']} | {r['target_hit@10']:.4f} | "
            f"{r['target_hit@50']:.4f} ({r['target_hit@50_min']:.4f}-{r['target_hit@50_max']:.4f}) | "
            f"{'' if promo is None else f'{promo:+.4f}'} | {'' if kept is None else f'{kept:.0%}'} | "
            f"{r['ndcg@10']:.4f} | {screen} |")
    return "\n".join(lines) + "\n"
