"""Where each stage publishes the files that git and DVC track beside its artefact: the one place.

An asset's artefact lives under artifacts/<asset>/ (the IO manager's directory, DVC-cached). Some
stages also publish small, git-tracked files: metrics for `dvc metrics`, tables for `dvc plots`, the
Markdown report. The artefact renders them (`Artefact.published() -> {role: bytes}`, or {role: {file name: bytes}}
for a directory), the IO manager
writes them atomically beside the artefact, and `orchestration.dvc_stages` declares the same paths
in dvc.yaml, so Dagster, DVC and the code cannot disagree about them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Published:
    role: str
    """The key under which the artefact's `published()` returns the content."""
    path: str
    """Relative to the project root; a directory when `directory` (its files are replaced together)."""
    kind: Literal["metrics", "plots", "outs"]
    """How dvc.yaml declares it: metrics (dvc metrics), plots (dvc plots), outs (a plain git-tracked file)."""
    directory: bool = False


PUBLISHED: dict[str, tuple[Published, ...]] = {
    "pretrained_recommender": (Published("curves", "metrics/curves", "plots", directory=True),),
    "pretrain_evaluation": (Published("metrics", "metrics/pretrain.json", "metrics"),),
    "cold_start_evaluation": (Published("metrics", "metrics/cold_start.json", "metrics"),),
    "distillation": (Published("metrics", "metrics/distillation.json", "metrics"),),
    "gan_samples": (Published("metrics", "metrics/gan.json", "metrics"),),
    "text_attack_evaluation": (Published("metrics", "metrics/text_attacks.json", "metrics"),
                               Published("figure", "reports/text_attacks.png", "plots")),
    # its own folder: a DVC output belongs to one stage (metrics/curves is pretraining's)
    "adversarial_recommender": (Published("curves", "metrics/adversarial_curves", "plots", directory=True),),
    "poisoning_evaluation": (Published("metrics", "metrics/poisoning.json", "metrics"),
                             Published("table", "metrics/poisoning.csv", "plots"),
                             Published("figure", "reports/poisoning.png", "plots")),
    "poisoning_grid": (Published("metrics", "metrics/poisoning_grid.json", "metrics"),
                       Published("report", "reports/poisoning_grid.md", "outs")),
    "robustness_evaluation": (Published("metrics", "metrics/robustness.json", "metrics"),
                              Published("table", "metrics/robustness.csv", "plots"),
                              Published("figure", "reports/robustness.png", "plots"),
                              Published("report", "reports/robustness.md", "outs")),
}
ARTIFACTS_DIR = "artifacts"
REPORT = "reports/robustness.md"


def published_by(asset: str) -> tuple[Published, ...]:
    return PUBLISHED.get(asset, ())
