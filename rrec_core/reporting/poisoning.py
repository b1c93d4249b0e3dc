"""The poisoning result as a table (DVC plots), a figure and the report's Markdown section."""
from __future__ import annotations

import numpy as np
import pandas as pd

from rrec_core.evaluation.poisoning import ARMS
from rrec_core.reporting.figures import png_bytes, pyplot
from rrec_core.results import PoisoningResult

STAGES = ("pretrained", "adversarial")


def poisoning_frame(result: PoisoningResult) -> pd.DataFrame:
    """Long table: attack, arm, stage and the metrics (clean rows under attack "none")."""
    if not result.attacks or result.clean is None:
        return pd.DataFrame(columns=["attack", "arm", "stage", "target_hit@10"])
    rows = [{"attack": "none", "arm": "clean", "stage": stage, **getattr(result.clean, stage)} for stage in STAGES]
    for attack, res in result.attacks.items():
        for arm in ARMS[1:]:
            if arm in res.arms:
                for stage in STAGES:
                    rows.append({"attack": attack, "arm": arm, "stage": stage, **getattr(res.arms[arm], stage)})
    return pd.DataFrame(rows)


def plot_poisoning(result: PoisoningResult) -> bytes:
    """Prediction shift (target percentile change from the clean model) per attack and arm, pretrained
    and adversarial side by side, with target HR@50 over each bar: on ML-100K the targets rise through
    most of the ranking without reaching the top 10, so HR@10 alone would draw nothing."""
    plt = pyplot()
    attacks = list(result.attacks)
    if not attacks:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "poisoning evaluation disabled (params.yaml: poisoning.enabled)", ha="center", va="center")
        return png_bytes(fig, dpi=110)
    arms = [a for a in ARMS[1:] if any(a in result.attacks[k].arms for k in attacks)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    width = 0.8 / max(len(arms), 1)
    for ax, stage in zip(axes, STAGES):
        for j, arm in enumerate(arms):
            cells = [getattr(result.attacks[a].arms[arm], stage) if arm in result.attacks[a].arms else {}
                     for a in attacks]
            x = np.arange(len(attacks)) + (j - (len(arms) - 1) / 2) * width
            ax.bar(x, [c.get("prediction_shift", np.nan) for c in cells], width, label=arm)
            for xi, c in zip(x, cells):
                if c:
                    ax.text(xi, max(c["prediction_shift"] or 0.0, 0) + 0.005, f"{c['target_hit@50']:.3f}",
                            ha="center", fontsize=7, rotation=90)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(attacks)), attacks)
        ax.set_title(f"{stage} MF-BPR (labels: target HR@50)")
        ax.set_ylabel("prediction shift (target percentile)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Poisoning: {100 * result.fake_ratio:.0f}% fake users, {len(result.targets)} targets")
    fig.tight_layout()
    return png_bytes(fig, dpi=110)


def poisoning_markdown(result: PoisoningResult, image: str | None = "poisoning.png") -> str:
    """The poisoning section of the robustness report."""
    if result.clean is None:
        return "## Data poisoning\n\nDisabled (params.yaml: poisoning.enabled).\n"
    c = result.clean
    lines = ["## Data poisoning", "",
             f"{100 * result.fake_ratio:.0f}% fake users pushing {len(result.targets)} unpopular target(s) "
             f"({', '.join(result.targets)}); MF-BPR retrained from scratch per arm, then adversarially "
             "fine-tuned; real users only. Promotion = target HR@10 minus the clean model's.", "",
             f"Clean reference: pretrained HR@10 {c.pretrained['target_hit@10']:.4f}, NDCG@10 "
             f"{c.pretrained['ndcg@10']:.4f}; adversarial HR@10 {c.adversarial['target_hit@10']:.4f}, "
             f"NDCG@10 {c.adversarial['ndcg@10']:.4f}.", "",
             "| attack | screen recall / precision | arm | model | HR@10 | HR@50 | exposure@50 | promotion@10 "
             "| shift | NDCG@10 change |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for attack, res in result.attacks.items():
        sc = res.screen
        for arm in ARMS[1:]:
            if arm not in res.arms:
                continue
            for stage in STAGES:
                m = getattr(res.arms[arm], stage)
                lines.append(f"| {attack} | {sc.recall:.2f} / {sc.precision:.2f} | {arm} | {stage} | "
                             f"{m['target_hit@10']:.4f} | {m['target_hit@50']:.4f} | {m['target_exposure@50']:.4f} | "
                             f"{m['promotion@10']:+.4f} | {m['prediction_shift']:+.4f} | {100 * m['ndcg@10_change']:+.2f}% |")
    lines += ["", "Defended effect as a share of the undefended effect (goal ≤ 20%; n/a: the undefended attack "
              "did not move that measure):", "",
              "| attack | model | HR@10 promotion | HR@50 promotion | prediction shift |", "|---|---|---:|---:|---:|"]
    fmt = lambda r: "n/a" if r is None else f"{100 * r:.1f}%"  # noqa: E731
    for attack, res in result.attacks.items():
        for stage in STAGES:
            r = res.defended_ratio[stage]
            lines.append(f"| {attack} | {stage} | {fmt(r['promotion@10'])} | {fmt(r['promotion@50'])} | "
                         f"{fmt(r['prediction_shift'])} |")
    for attack, res in result.attacks.items():
        if "gan_ft" in res.arms:
            u, g = res.arms["undefended"].adversarial, res.arms["gan_ft"].adversarial
            lines.append("")
            lines.append(f"Ablation, {attack}: GAN-weighted fine-tuning alone (no screen) moves the adversarial model's "
                         f"prediction shift {u['prediction_shift']:+.4f} → {g['prediction_shift']:+.4f}, HR@50 "
                         f"{u['target_hit@50']:.4f} → {g['target_hit@50']:.4f}, NDCG@10 {u['ndcg@10']:.4f} → "
                         f"{g['ndcg@10']:.4f}.")
    if any(res.stealth for res in result.attacks.values()):
        lines += ["", "Stealth: out-of-fold AUC of real-vs-fake classifiers (0.5: indistinguishable; "
                  "rrec_core.poisoning.stealth) and profile lengths (real users: mean / std):", "",
                  "| attack | AUC, profile statistics | AUC, items (targets left out) | fake length mean / std |",
                  "|---|---:|---:|---:|"]
        for attack, res in result.attacks.items():
            st = res.stealth
            if st:
                lines.append(f"| {attack} | {st['feature_auc']:.3f} | {st['item_auc']:.3f} | "
                             f"{st['fake_length_mean']:.1f} / {st['fake_length_std']:.1f} |")
        st = next(res.stealth for res in result.attacks.values() if res.stealth)
        lines.append(f"| (real users) | | | {st['real_length_mean']:.1f} / {st['real_length_std']:.1f} |")
    if result.detector:
        d = result.detector
        lines += ["", f"GAN-trained detector (fine-tuning weights 1 − P(fake)): fitted on {d['fakes']} GAN profiles "
                  f"among {d['users']} users, training accuracy {d['train_accuracy']:.3f}."]
    if image:
        lines += ["", f"![poisoning]({image})"]
    return "\n".join(lines) + "\n"
