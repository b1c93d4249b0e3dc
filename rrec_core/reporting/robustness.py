"""The robustness result as a table (DVC plots), a headline, a figure and Markdown."""
from __future__ import annotations

import pandas as pd

from rrec_core.reporting.figures import png_bytes, pyplot
from rrec_core.results import RobustnessResult


def robustness_frame(result: RobustnessResult) -> pd.DataFrame:
    """One row per model and attack, one per model and radius for the per-user worst case
    (attack "worst_case") and for the per-user attacker (attack "per_user"): the table `dvc plots` draws
    (metrics/robustness.csv)."""
    rows = []
    for name, r in result.models.items():
        for a in r.attacks:
            rows.append({"model": name, "attack": a.attack, "objective": a.objective, "steps": a.steps,
                         "restarts": a.restarts, "norm": a.norm, "scale": a.scale, "eps": a.eps, **a.metrics,
                         "ndcg@10_kept": a.ndcg_kept, "clean_ndcg@10": r.clean["ndcg@10"]})
        for w in r.worst_case:
            rows.append({"model": name, "attack": "worst_case", "objective": "suite", "steps": 0, "restarts": 0,
                         "norm": w.norm, "scale": w.scale, "eps": w.eps, "ndcg@10": w.ndcg,
                         "ndcg@10_kept": w.ndcg_kept, "clean_ndcg@10": r.clean["ndcg@10"]})
        for t in r.per_user:
            rows.append({"model": name, "attack": "per_user", "objective": "targeted", "steps": t.steps,
                         "restarts": 1, "norm": t.norm, "scale": t.scale, "eps": t.eps, **t.metrics,
                         "ndcg@10_kept": t.ndcg_kept, "clean_ndcg@10": r.clean["ndcg@10"]})
    return pd.DataFrame(rows)


def per_user_frame(result: RobustnessResult) -> pd.DataFrame:
    """NDCG@10 kept under the per-user attacker: one row per model, one column per norm, scale and radius."""
    rows = {name: {f"{t.norm} {t.scale} {t.eps:g}": t.ndcg_kept for t in r.per_user}
            for name, r in result.models.items() if r.per_user}
    return pd.DataFrame.from_dict(rows, orient="index")


def worst_case_frame(result: RobustnessResult) -> pd.DataFrame:
    """Per model and radius: the per-user worst case over the suite, the strongest single attack."""
    rows = []
    for name, r in result.models.items():
        for w in r.worst_case:
            rows.append({"model": name, "norm": w.norm, "scale": w.scale, "eps": w.eps,
                         "clean ndcg@10": r.clean["ndcg@10"], "worst-case ndcg@10": w.ndcg,
                         "kept": w.ndcg_kept, "strongest single attack": w.strongest_single,
                         "its ndcg@10": w.strongest_single_ndcg})
    return pd.DataFrame(rows)


def headline(result: RobustnessResult, eps_abs: float = 0.5, eps_rel: float = 0.25) -> pd.DataFrame:
    """The table a reader wants first: clean NDCG@10, the per-user worst case over the whole suite (L2)
    at one absolute and one relative radius (the nearest in the grid), the strongest pairwise PGD there
    for comparison, and the norms that make an absolute radius meaningful."""
    wc = worst_case_frame(result)
    wc = wc[wc.norm == "l2"]
    eps_abs = _nearest(wc[wc.scale == "absolute"].eps, eps_abs)
    eps_rel = _nearest(wc[wc.scale == "relative"].eps, eps_rel)
    cols: dict[str, pd.Series] = {
        "clean ndcg@10": pd.Series({n: r.clean["ndcg@10"] for n, r in result.models.items()})}
    df = robustness_frame(result)
    for scale, eps in (("absolute", eps_abs), ("relative", eps_rel)):
        sel = wc[(wc.scale == scale) & (wc.eps == eps)].set_index("model")
        cols[f"worst case ({scale} eps={eps:g})"] = sel["worst-case ndcg@10"]
        cols[f"kept ({scale} eps={eps:g})"] = sel["kept"]
        targeted = df[(df.attack == "per_user") & (df.norm == "l2") & (df.scale == scale) & (df.eps == eps)]
        if len(targeted):
            cols[f"per-user attacker ({scale} eps={eps:g})"] = targeted.set_index("model")["ndcg@10"]
        bpr = df[(df.norm == "l2") & (df.objective == "bpr") & (df.scale == scale) & (df.eps == eps)]
        if len(bpr):
            strongest = bpr.loc[bpr.groupby("model")["ndcg@10"].idxmin()].set_index("model")
            cols[f"pairwise PGD ({scale} eps={eps:g})"] = strongest["ndcg@10"]
    cols["mean user norm"] = pd.Series({n: r.norms.user.mean for n, r in result.models.items()})
    cols["mean item norm"] = pd.Series({n: r.norms.item.mean for n, r in result.models.items()})
    return pd.DataFrame(cols)


def _nearest(values: pd.Series, want: float) -> float:
    vals = sorted(set(values.tolist()))
    return min(vals, key=lambda v: abs(v - want)) if vals else want


def plot_robustness(result: RobustnessResult) -> bytes:
    """NDCG@10 vs eps per scale (L2): the per-user worst case over the suite (solid), the strongest
    pairwise PGD (dashed) and the per-user attacker (dotted), one colour per model."""
    plt = pyplot()
    df = robustness_frame(result)
    df = df[df.norm == "l2"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = {m: f"C{i}" for i, m in enumerate(result.models)}
    for ax, scale in zip(axes, ("absolute", "relative")):
        part = df[df.scale == scale]
        for model, g in part.groupby("model", sort=False):
            wc = g[g.attack == "worst_case"].sort_values("eps")
            bpr = g[g.objective == "bpr"].groupby("eps")["ndcg@10"].min()
            clean = g["clean_ndcg@10"].iloc[0]
            ax.plot([0] + wc.eps.tolist(), [clean] + wc["ndcg@10"].tolist(), marker="o", color=colours[model],
                    label=f"{model} worst case")
            ax.plot([0] + bpr.index.tolist(), [clean] + bpr.tolist(), marker=".", linestyle="--",
                    color=colours[model], label=f"{model} pairwise PGD")
            pu = g[g.attack == "per_user"].sort_values("eps")
            if len(pu):
                ax.plot([0] + pu.eps.tolist(), [clean] + pu["ndcg@10"].tolist(), marker="x", linestyle=":",
                        color=colours[model], label=f"{model} per-user attacker")
        ax.set(xlabel=f"eps ({scale}, L2)", ylabel="test NDCG@10", title=f"{scale} radius")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig, dpi=90)


def report_markdown(result: RobustnessResult, image: str | None = None) -> str:
    lines = ["# Robustness report", "",
             "Test metrics (RecBole protocol, full ranking) of each model, clean and under white-box attacks on",
             "the user and item vectors: pairwise FGSM / PGD (BPR loss of the test pairs against sampled",
             "negatives) and PGD aimed at the ranking (listwise cross-entropy of the test positives over all",
             "candidates; margin to the k-th best candidate; in both balls; random restarts, each user at its worst iterate). The worst",
             "case is, per user, the lowest NDCG@10 over every attack at that radius, then averaged.",
             "`absolute` radii are in embedding units; `relative` radii are fractions of each row's own L2",
             "norm. Norms are the mean L2 norm of the user and item vectors that the attack perturbs.",
             "Every suite attack perturbs the tables once for all users; the per-user attacker column is the",
             "other threat model (one user attacked at a time; its own section below).", "",
             "## Headline: worst case over the suite (shared tables), L2", "",
             headline(result).to_markdown(floatfmt=".4f"), ""]
    if image:
        lines += [f"![NDCG@10 vs eps]({image})", ""]
    pu = per_user_frame(result)
    if len(pu):
        lines += ["## The per-user attacker: another threat model", "",
                  "Everything above perturbs the tables once for all users (the shared threat model; the worst",
                  "case counts each user at the suite's perturbation that hurt it most). An attacker who targets",
                  "one user at a time may move every item row toward or away from that user alone (closed form)",
                  "and PGD its own row (rrec_core.attacks.targeted). NDCG@10 kept under it, per norm, scale and",
                  "radius (L-inf radii already x linf_scale):", "",
                  pu.to_markdown(floatfmt=".3f"), ""]
    lines += ["## Worst case at every radius", "",
              worst_case_frame(result).to_markdown(index=False, floatfmt=".4f"), ""]
    df = robustness_frame(result)
    df = df[df.attack != "worst_case"]
    lines += ["## Every attack (NDCG@10)", ""]
    piv = df.pivot_table(index=["norm", "scale", "eps", "objective", "attack", "steps"], columns="model",
                         values="ndcg@10", sort=False)
    lines += [piv.to_markdown(floatfmt=".4f"), ""]
    return "\n".join(lines)
