"""Training curves (the CSV `dvc plots` draws, a PNG for Dagster) and the pretraining metrics table."""
from __future__ import annotations

import pandas as pd

from rrec_core.reporting.figures import png_bytes, pyplot
from rrec_core.results import PretrainResult

CURVE_COLUMNS = ["epoch", "loss", "valid_ndcg@10", "valid_ndcg@10_attacked", "valid_recall@10", "valid_hit@10",
                 "valid_mrr@10"]


def curve_csv(history: list[dict]) -> bytes:
    """Per-epoch loss and validation metrics (no timings: the file is tracked and diffed)."""
    frame = pd.DataFrame(history)
    frame = frame.reindex(columns=[c for c in CURVE_COLUMNS if c in frame.columns])
    return frame.to_csv(index=False, float_format="%.6g").encode()


def training_curve_png(histories: dict[str, list[dict]]) -> bytes:
    """Validation NDCG@10 and training loss per epoch, one line per model."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist if "valid_ndcg@10" in h]
        a.plot(ep, [h["valid_ndcg@10"] for h in hist if "valid_ndcg@10" in h], label=name)
        b.plot([h["epoch"] for h in hist if h["epoch"] > 0], [h["loss"] for h in hist if h["epoch"] > 0], label=name)
    a.set(xlabel="epoch", ylabel="valid NDCG@10")
    b.set(xlabel="epoch", ylabel="BPR loss")
    a.legend()
    fig.tight_layout()
    return png_bytes(fig, dpi=90)


def metrics_markdown(result: PretrainResult, keys=("ndcg@10", "recall@10", "hit@10", "mrr@10", "precision@10")) -> str:
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, m in result.models.items():
        lines.append(f"| {name} | " + " | ".join(f"{m.test[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)
