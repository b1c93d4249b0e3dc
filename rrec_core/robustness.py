"""Robustness evaluation: every model, clean and under every attack of the grid, side by side.

For each model: clean test metrics, test metrics under FGSM / PGD-k at each radius (absolute and
norm-relative, L2 and L-inf), the relative NDCG@10 drop, and the embedding-norm statistics that make an
absolute-radius number interpretable (a model can look robust by inflating its norms).
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from rrec_core.adversarial import attacked_metrics
from rrec_core.attacks import Attack, norm_stats
from rrec_core.config import EvalConfig, RobustnessConfig
from rrec_core.data.split import Split
from rrec_core.models import Recommender
from rrec_core.train import evaluate_model

KEYS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")


def attack_grid(cfg: RobustnessConfig) -> list[Attack]:
    grid = []
    for norm in cfg.norms:
        scale_l = cfg.linf_scale if norm == "linf" else 1.0
        for scale, epss in (("absolute", cfg.eps_absolute), ("relative", cfg.eps_relative)):
            for eps in epss:
                for steps in cfg.steps:
                    grid.append(Attack(eps=eps * scale_l, steps=steps, norm=norm, scale=scale))
    return grid


def evaluate_robustness(models: dict[str, Recommender], split: Split, cfg: RobustnessConfig,
                        eval_cfg: EvalConfig, progress: bool = True) -> dict:
    """{"models": {name: {"clean", "norms", "attacks": [...]}}, "grid": [...]}; all numbers on test."""
    from tqdm.auto import tqdm

    grid = attack_grid(cfg)
    out: dict = {"models": {}, "grid": [a.name for a in grid]}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.eval()
        clean = evaluate_model(model, split, "test", eval_cfg)
        with torch.no_grad():
            U = model.user_vectors(torch.arange(split.n_users, device=model.user_embedding.weight.device))
            V = model.item_vectors()
        rows = []
        for attack in tqdm(grid, desc=f"attack {name}", disable=not progress, unit="attack"):
            m = attacked_metrics(model, split, attack, "test", eval_cfg, cfg.negatives, cfg.seed)
            rows.append({"attack": "fgsm" if attack.steps == 1 else "pgd", "steps": attack.steps,
                         "norm": attack.norm, "scale": attack.scale, "eps": attack.eps,
                         **{k: round(m[k], 6) for k in KEYS},
                         "ndcg@10_kept": round(m["ndcg@10"] / clean["ndcg@10"], 6) if clean["ndcg@10"] else 0.0})
        out["models"][name] = {"clean": {k: round(clean[k], 6) for k in KEYS},
                               "norms": {"user": norm_stats(U), "item": norm_stats(V)},
                               "attacks": rows, "seconds": round(time.perf_counter() - t0, 2)}
    return out


def robustness_frame(result: dict) -> pd.DataFrame:
    rows = []
    for name, r in result["models"].items():
        for a in r["attacks"]:
            rows.append({"model": name, **a, "clean_ndcg@10": r["clean"]["ndcg@10"]})
    return pd.DataFrame(rows)


def headline(result: dict, eps_abs: float = 0.5, eps_rel: float = 0.25, steps: int | None = None) -> pd.DataFrame:
    """The table a reader wants first: clean vs the strongest PGD (L2) at one absolute and one relative
    radius (the nearest radius in the grid when the requested one was not run)."""
    df = robustness_frame(result)
    l2 = df[df.norm == "l2"]
    steps = steps if steps is not None else int(l2.steps.max())
    eps_abs = _nearest(l2[l2.scale == "absolute"].eps, eps_abs)
    eps_rel = _nearest(l2[l2.scale == "relative"].eps, eps_rel)
    sel = df[(df.norm == "l2") & (df.steps == steps) & (((df.scale == "absolute") & (df.eps == eps_abs))
                                                       | ((df.scale == "relative") & (df.eps == eps_rel)))]
    t = sel.pivot_table(index="model", columns="scale", values=["ndcg@10", "ndcg@10_kept"], sort=False)
    t.columns = [f"{v} ({s} eps={eps_abs if s == 'absolute' else eps_rel})" for v, s in t.columns]
    clean = pd.Series({n: r["clean"]["ndcg@10"] for n, r in result["models"].items()}, name="clean ndcg@10")
    norms = pd.Series({n: r["norms"]["user"]["mean"] for n, r in result["models"].items()}, name="mean user norm")
    inorms = pd.Series({n: r["norms"]["item"]["mean"] for n, r in result["models"].items()}, name="mean item norm")
    return pd.concat([clean, t, norms, inorms], axis=1)


def _nearest(values: pd.Series, want: float) -> float:
    vals = sorted(set(values.tolist()))
    return min(vals, key=lambda v: abs(v - want)) if vals else want


def plot_robustness(result: dict, path: str | Path, steps: int | None = None) -> Path:
    """NDCG@10 vs eps, one line per model and attack (FGSM, PGD-k), per scale, L2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rrec_core.io import atomic_path

    df = robustness_frame(result)
    df = df[df.norm == "l2"]
    steps = steps if steps is not None else int(df.steps.max())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, scale in zip(axes, ("absolute", "relative")):
        for (model, attack, k), g in df[df.scale == scale].groupby(["model", "attack", "steps"]):
            if attack == "pgd" and k != steps:
                continue
            g = g.sort_values("eps")
            ax.plot([0] + g.eps.tolist(), [g["clean_ndcg@10"].iloc[0]] + g["ndcg@10"].tolist(), marker="o",
                    linestyle="-" if attack == "pgd" else "--", label=f"{model} {attack}{'' if k == 1 else k}")
        ax.set(xlabel=f"eps ({scale}, L2)", ylabel="test NDCG@10", title=f"{scale} radius")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)


def report_markdown(result: dict, image: str | None = None) -> str:
    lines = ["# Robustness report", "",
             "Test metrics (RecBole protocol, full ranking) of each model, clean and under white-box attacks",
             "that maximize the BPR loss of the test pairs. `absolute` radii are in embedding units;",
             "`relative` radii are fractions of each row's own L2 norm. Norms are the mean L2 norm of the",
             "user and item vectors that the attack perturbs.", "",
             "## Headline: strongest PGD in the grid, L2", "", headline(result).to_markdown(floatfmt=".4f"), ""]
    if image:
        lines += [f"![NDCG@10 vs eps]({image})", ""]
    df = robustness_frame(result)
    lines += ["## Every attack (NDCG@10)", ""]
    piv = df.pivot_table(index=["norm", "scale", "eps", "attack", "steps"], columns="model", values="ndcg@10",
                         sort=False)
    lines += [piv.to_markdown(floatfmt=".4f"), ""]
    return "\n".join(lines)
