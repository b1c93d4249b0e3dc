"""The text tampering result as a figure and the report's Markdown section."""
from __future__ import annotations

import numpy as np

from rrec_core.reporting.figures import png_bytes, pyplot
from rrec_core.results import TextAttackModel, TextAttackResult


def _unguarded_cold(result: TextAttackResult) -> tuple[str, TextAttackModel] | None:
    return next(((n, m) for n, m in result.models.items() if m.targets_cold and not m.new_item_guard), None)


def guard_shares(result: TextAttackResult) -> dict[str, dict[str, float | None]]:
    """Per attack, the promotion (attacked minus clean HR@50, each under its own serving) the new-item guard
    leaves of the unguarded one, alone and behind the sanitizer: {attack: {"guard": share, "guard+sanitizer":
    share}}; None where the unguarded attack promoted nothing."""
    base = _unguarded_cold(result)
    guarded = next((m for m in result.models.values() if m.new_item_guard), None)
    if base is None or guarded is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for kind, row in base[1].attacks.items():
        g = guarded.attacks.get(kind)
        gain = row.undefended.hr50 - base[1].clean.hr50
        if g is None:
            continue
        out[kind] = {name: (round((e.hr50 - guarded.clean.hr50) / gain, 4) if gain > 0 else None)
                     for name, e in (("guard", g.undefended), ("guard+sanitizer", g.sanitized))}
    return out


def plot_text_attacks(result: TextAttackResult) -> bytes:
    """Target HR@50 clean / attacked / attacked then sanitized, per attack, one panel per model and serving."""
    plt = pyplot()
    models = [(n, m) for n, m in result.models.items() if m.attacks]
    if not result.enabled or not models:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "text attack evaluation disabled (params.yaml: text_attacks.enabled)", ha="center",
                va="center")
        return png_bytes(fig, dpi=110)
    cols = min(3, len(models))
    rows = int(np.ceil(len(models) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (name, m) in zip(axes.flat, models):
        kinds = list(m.attacks)
        x = np.arange(len(kinds))
        series = {"clean": [m.clean.hr50] * len(kinds), "attacked": [m.attacks[k].undefended.hr50 for k in kinds],
                  "sanitized": [m.attacks[k].sanitized.hr50 for k in kinds]}
        for j, (label, ys) in enumerate(series.items()):
            ax.bar(x + (j - 1) * 0.27, ys, 0.27, label=label)
        ax.set_xticks(x, kinds)
        ax.set_title(name.replace(" (", "\n("), fontsize=9)
        ax.set_ylabel("target HR@50")
    # the cold panels (unguarded, guarded) on one scale: the guard's effect is their difference in height
    cold = [ax for ax, (_, m) in zip(axes.flat, models) if m.targets_cold]
    if len(cold) > 1:
        top = max(ax.get_ylim()[1] for ax in cold)
        for ax in cold:
            ax.set_ylim(0, top)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Text tampering: {len(result.targets)} targets' titles attacked (the attacks search against each "
                 "serving)", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig, dpi=110)


def text_attacks_markdown(result: TextAttackResult, image: str | None = "text_attacks.png") -> str:
    """The text tampering section of the robustness report."""
    if not result.enabled:
        return "## Text tampering\n\nDisabled (params.yaml: text_attacks.enabled).\n"
    lines = ["## Text tampering", "",
             f"{len(result.targets)} unpopular target items' titles attacked, each against the model and serving "
             f"of its row (HR@50 = exposure@50 over ~{result.mean_audience:.0f} real users who never interacted "
             "with the target). Warm: the targets keep their trained ID rows; cold: they are served as new items, "
             "by their text alone; guarded: cold, through the new-item guard (rrec_core.models.new_items). "
             "Sanitized: the attacked title after the validation stage's sanitizer. Test NDCG@10 with every "
             "target's attacked title in place.", "",
             "| model | attack | clean HR@50 | attacked HR@50 | sanitized HR@50 | attacked HR@10 | test NDCG@10 "
             "(clean → attacked) | edit distance | LM similarity | survives sanitizer |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for name, m in result.models.items():
        for kind, a in m.attacks.items():
            lines.append(f"| {name} | {kind} | {m.clean.hr50:.4f} | {a.undefended.hr50:.4f} | {a.sanitized.hr50:.4f} "
                         f"| {a.undefended.hr10:.4f} | {m.clean_test_ndcg10:.4f} → {a.test_ndcg10:.4f} "
                         f"| {a.edit_distance:.1f} | {a.lm_similarity:.3f} | {a.survives_sanitizer:.2f} |")
    shares = guard_shares(result)
    if shares:
        lines += ["", "Promotion the new-item guard leaves of the unguarded cold targets' (attacked minus clean "
                  "HR@50, each under its own serving):", "",
                  "| attack | guard | guard + sanitizer |", "|---|---:|---:|"]
        for kind, s in shares.items():
            cells = [f"{100 * v:.0f}%" if v is not None else "n/a (no promotion)" for v in s.values()]
            lines.append(f"| {kind} | {' | '.join(cells)} |")
    if image:
        lines += ["", f"![text tampering]({image})"]
    return "\n".join(lines) + "\n"
