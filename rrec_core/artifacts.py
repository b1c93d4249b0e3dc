"""The artefacts that flow between pipeline stages, each with `save(dir)` / `load(dir)`.

Dagster's IO manager and the DVC stages both persist these through the same two methods, so an
asset materialized in the UI and a stage run by `dvc repro` produce identical files. Tables are
Parquet, tensors safetensors, everything else JSON. An artefact that also publishes git-tracked
files (metrics, plots, the report; declared in rrec_core.outputs) renders them in `published()`;
timings go to the artefact's own timings.json, never into a published file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from rrec_core.data.loaders import Dataset
from rrec_core.data.split import Split
from rrec_core.io import load_tensors, read_json, save_tensors, write_json, write_parquet, write_text
from rrec_core.lm.encoder import TextEmbeddings
from rrec_core.models import Recommender, load_recommender, save_recommender
from rrec_core.results import (
    ColdStartResult,
    DistillationResult,
    GanReport,
    PoisoningResult,
    PretrainResult,
    RobustnessResult,
    TextAttackResult,
)

if TYPE_CHECKING:
    from rrec_core.poisoning.gan import GanResult

TEXT_CHANGE_COLUMNS = ("row", "column", "kinds", "before", "after")


@dataclass
class RawData:
    """Loaded, not yet validated: interactions and items in rrec's frame contract."""

    dataset: Dataset

    def save(self, path: Path) -> None:
        write_parquet(path / "interactions.parquet", self.dataset.interactions)
        if self.dataset.items is not None:
            write_parquet(path / "items.parquet", self.dataset.items)
        write_json(path / "meta.json", {"name": self.dataset.name, "sources": {
            "interactions": self.dataset.interactions.attrs.get("source"),
            "items": None if self.dataset.items is None else self.dataset.items.attrs.get("source")}})

    @classmethod
    def load(cls, path: Path) -> "RawData":
        meta = read_json(path / "meta.json")
        inter = pd.read_parquet(path / "interactions.parquet")
        inter.attrs["source"] = meta["sources"]["interactions"]
        items = None
        if (path / "items.parquet").exists():
            items = pd.read_parquet(path / "items.parquet")
            items.attrs["source"] = meta["sources"]["items"]
        return cls(Dataset(inter, items, meta["name"]))


@dataclass
class ValidatedData:
    """Interactions that passed the expectation suite, split for training, with items aligned to it."""

    split: Split
    items: pd.DataFrame  # one row per split.item_ids entry, in that order
    report: dict  # the validation report (ValidationReport.to_dict())
    name: str = ""
    # users the poisoning screen flagged: user_id, score, n_interactions (kept in raw data, not trained on)
    quarantine: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["user_id", "score",
                                                                                   "n_interactions"]))
    # item-text cells the sanitizer changed: row (source line), column, kinds, before, after
    text_changes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(TEXT_CHANGE_COLUMNS)))

    def save(self, path: Path) -> None:
        self.split.save(path)
        write_parquet(path / "items.parquet", self.items)
        write_parquet(path / "quarantine.parquet", self.quarantine)
        write_parquet(path / "text_changes.parquet", self.text_changes)
        write_json(path / "validation_report.json", self.report)
        write_json(path / "meta.json", {"name": self.name})

    @classmethod
    def load(cls, path: Path) -> "ValidatedData":
        q, t = path / "quarantine.parquet", path / "text_changes.parquet"
        return cls(Split.load(path), pd.read_parquet(path / "items.parquet"),
                   read_json(path / "validation_report.json"), read_json(path / "meta.json")["name"],
                   pd.read_parquet(q) if q.exists() else pd.DataFrame(columns=["user_id", "score", "n_interactions"]),
                   pd.read_parquet(t) if t.exists() else pd.DataFrame(columns=list(TEXT_CHANGE_COLUMNS)))


@dataclass
class ItemTextEmbeddings:
    emb: TextEmbeddings

    def save(self, path: Path) -> None:
        save_tensors(path / "embeddings.safetensors", {"embeddings": self.emb.embeddings})
        write_json(path / "meta.json", {"item_ids": self.emb.item_ids, "model": self.emb.model,
                                        "cache_key": self.emb.cache_key, "texts": self.emb.texts,
                                        "config": self.emb.config})

    @classmethod
    def load(cls, path: Path) -> "ItemTextEmbeddings":
        meta = read_json(path / "meta.json")
        emb = load_tensors(path / "embeddings.safetensors")["embeddings"]
        return cls(TextEmbeddings(meta["item_ids"], emb, meta["model"], meta["cache_key"], True, meta["texts"],
                                  meta["config"]))


@dataclass
class TrainedModels:
    """One or more trained recommenders by name, with their training curves."""

    models: dict[str, Recommender]
    histories: dict[str, list[dict]] = field(default_factory=dict)
    towers: dict[str, dict] = field(default_factory=dict)  # fine-tuned LM layers (state dicts), if any

    def save(self, path: Path) -> None:
        for name, model in self.models.items():
            save_recommender(model, path / name)
            write_json(path / name / "history.json", self.histories.get(name, []))
            if name in self.towers:
                save_tensors(path / name / "lm_tower.safetensors", self.towers[name])
        write_json(path / "models.json", sorted(self.models))

    @classmethod
    def load(cls, path: Path) -> "TrainedModels":
        names = read_json(path / "models.json")
        models = {n: load_recommender(path / n) for n in names}
        hist = {n: read_json(path / n / "history.json") for n in names if (path / n / "history.json").exists()}
        towers = {n: load_tensors(path / n / "lm_tower.safetensors") for n in names
                  if (path / n / "lm_tower.safetensors").exists()}
        return cls(models, hist, towers)

    def published(self) -> dict:
        from rrec_core.reporting.training import curve_csv

        return {"curves": {f"{name}.csv": curve_csv(h) for name, h in self.histories.items()}}

    @cached_property
    def curve_png(self) -> bytes:
        from rrec_core.reporting.training import training_curve_png

        return training_curve_png(self.histories)


def _save_timings(path: Path, timings: dict[str, float]) -> None:
    write_json(path / "timings.json", timings)


def _load_timings(path: Path) -> dict[str, float]:
    return read_json(path / "timings.json") if (path / "timings.json").exists() else {}


@dataclass
class PretrainEvaluation:
    """Test and validation metrics of every pretrained model (metrics/pretrain.json)."""

    result: PretrainResult
    timings: dict[str, float] = field(default_factory=dict)  # seconds per model

    def save(self, path: Path) -> None:
        write_text(path / "metrics.json", self.result.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "PretrainEvaluation":
        return cls(PretrainResult.from_json((path / "metrics.json").read_text()), _load_timings(path))

    def published(self) -> dict:
        return {"metrics": self.result.to_json().encode()}


@dataclass
class ColdStartEvaluation:
    """The item cold-start evaluation (metrics/cold_start.json)."""

    result: ColdStartResult
    timings: dict[str, float] = field(default_factory=dict)  # seconds per model

    def save(self, path: Path) -> None:
        write_text(path / "metrics.json", self.result.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "ColdStartEvaluation":
        return cls(ColdStartResult.from_json((path / "metrics.json").read_text()), _load_timings(path))

    def published(self) -> dict:
        return {"metrics": self.result.to_json().encode()}


@dataclass
class DistillationEvaluation:
    """The distilled students (saved like any recommender) and how they compare (metrics/distillation.json)."""

    result: DistillationResult
    models: dict[str, Recommender] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # encode / score / train seconds

    def save(self, path: Path) -> None:
        for name, model in self.models.items():
            save_recommender(model, path / "models" / name)
        write_json(path / "models.json", sorted(self.models))
        write_text(path / "metrics.json", self.result.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "DistillationEvaluation":
        names = read_json(path / "models.json") if (path / "models.json").exists() else []
        return cls(DistillationResult.from_json((path / "metrics.json").read_text()),
                   {n: load_recommender(path / "models" / n) for n in names}, _load_timings(path))

    def published(self) -> dict:
        return {"metrics": self.result.to_json().encode()}


@dataclass
class PoisoningEvaluation:
    """The poisoning evaluation (metrics/poisoning.json, its table and figure)."""

    result: PoisoningResult
    timings: dict[str, float] = field(default_factory=dict)  # seconds per arm

    def save(self, path: Path) -> None:
        write_text(path / "metrics.json", self.result.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "PoisoningEvaluation":
        return cls(PoisoningResult.from_json((path / "metrics.json").read_text()), _load_timings(path))

    @cached_property
    def figure_png(self) -> bytes:
        from rrec_core.reporting.poisoning import plot_poisoning

        return plot_poisoning(self.result)

    def published(self) -> dict:
        from rrec_core.reporting.poisoning import poisoning_frame

        return {"metrics": self.result.to_json().encode(),
                "table": poisoning_frame(self.result).to_csv(index=False).encode(),
                "figure": self.figure_png}


@dataclass
class PoisoningGrid:
    """The poisoning grid study: every cell's result and the summary rows (metrics/poisoning_grid.json)."""

    cells: list[dict]
    summary: list[dict]
    config: dict

    def to_json(self) -> str:
        import json

        return json.dumps({"config": self.config, "summary": self.summary, "cells": self.cells}, indent=2)

    def save(self, path: Path) -> None:
        write_text(path / "grid.json", self.to_json())

    @classmethod
    def load(cls, path: Path) -> "PoisoningGrid":
        d = read_json(path / "grid.json")
        return cls(d["cells"], d["summary"], d["config"])

    def markdown(self) -> str:
        from rrec_core.evaluation.poisoning_grid import grid_markdown

        return grid_markdown(self.summary)

    def published(self) -> dict:
        cfg = self.config.get("poisoning_grid", {})
        head = (f"# Poisoning grid\n\nattacks {cfg.get('attacks')} x fake ratios {cfg.get('fake_ratios')} x seeds "
                f"{cfg.get('seeds')} ({len(self.cells)} cells; targets: {cfg.get('n_targets')} per cell, popularity "
                f"quantiles {cfg.get('target_quantiles')}, at least {cfg.get('target_min_count')} interactions). "
                "Measured on real users who had not interacted with the target; promotion over the same seed's "
                "clean cell; kept = the arm's promotion@50 as a share of the undefended one "
                "(rrec_core.evaluation.poisoning_grid).\n\n")
        return {"metrics": self.to_json().encode(), "report": (head + self.markdown()).encode()}


@dataclass
class RobustnessEvaluation:
    """Every model under every embedding attack; the report also carries the poisoning and text tampering
    sections."""

    result: RobustnessResult
    poisoning: PoisoningResult | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per model
    text_attacks: TextAttackResult | None = None

    def save(self, path: Path) -> None:
        write_text(path / "metrics.json", self.result.to_json())
        if self.poisoning is not None:
            write_text(path / "poisoning.json", self.poisoning.to_json())
        if self.text_attacks is not None:
            write_text(path / "text_attacks.json", self.text_attacks.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "RobustnessEvaluation":
        pois, text = path / "poisoning.json", path / "text_attacks.json"
        return cls(RobustnessResult.from_json((path / "metrics.json").read_text()),
                   PoisoningResult.from_json(pois.read_text()) if pois.exists() else None, _load_timings(path),
                   TextAttackResult.from_json(text.read_text()) if text.exists() else None)

    @cached_property
    def figure_png(self) -> bytes:
        from rrec_core.reporting.robustness import plot_robustness

        return plot_robustness(self.result)

    def report_markdown(self) -> str:
        from rrec_core.reporting.robustness import report_markdown

        report = report_markdown(self.result, image="robustness.png")
        if self.poisoning is not None and self.poisoning.attacks:
            from rrec_core.reporting.poisoning import poisoning_markdown

            report = report.rstrip("\n") + "\n\n" + poisoning_markdown(self.poisoning, image="poisoning.png")
        if self.text_attacks is not None and self.text_attacks.enabled:
            from rrec_core.reporting.text_attacks import text_attacks_markdown

            report = report.rstrip("\n") + "\n\n" + text_attacks_markdown(self.text_attacks, image="text_attacks.png")
        return report

    def published(self) -> dict:
        from rrec_core.reporting.robustness import robustness_frame

        return {"metrics": self.result.to_json().encode(),
                "table": robustness_frame(self.result).to_csv(index=False).encode(),
                "figure": self.figure_png, "report": self.report_markdown().encode()}


@dataclass
class GanSamples:
    """The trained fake-profile generator, the profiles it generated and how they were judged."""

    result: GanResult
    profiles: pd.DataFrame  # interactions of the generated users (contract columns)
    report: GanReport
    timings: dict[str, float] = field(default_factory=dict)  # training seconds

    def save(self, path: Path) -> None:
        from rrec_core.poisoning.gan import save_generator

        save_generator(self.result, path / "generator")
        write_parquet(path / "profiles.parquet", self.profiles)
        write_text(path / "report.json", self.report.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "GanSamples":
        from rrec_core.poisoning.gan import load_generator

        return cls(load_generator(path / "generator"), pd.read_parquet(path / "profiles.parquet"),
                   GanReport.from_json((path / "report.json").read_text()), _load_timings(path))

    def published(self) -> dict:
        import json

        return {"metrics": (json.dumps(self.report.published(), indent=2, sort_keys=True) + "\n").encode()}


@dataclass
class Recommendations:
    """Top-k new items per user from one model (top_k.parquet: user_id, rank, item_id, title, score)."""

    top_k: pd.DataFrame
    model: str  # <stage>/<name>, e.g. adversarial/text_hybrid
    k: int

    def save(self, path: Path) -> None:
        write_parquet(path / "top_k.parquet", self.top_k)
        write_json(path / "meta.json", {"model": self.model, "k": self.k})

    @classmethod
    def load(cls, path: Path) -> "Recommendations":
        meta = read_json(path / "meta.json")
        return cls(pd.read_parquet(path / "top_k.parquet"), meta["model"], meta["k"])


@dataclass
class TextAttackEvaluation:
    """The text tampering evaluation (metrics/text_attacks.json)."""

    result: TextAttackResult
    timings: dict[str, float] = field(default_factory=dict)  # seconds per model

    def save(self, path: Path) -> None:
        write_text(path / "metrics.json", self.result.to_json())
        _save_timings(path, self.timings)

    @classmethod
    def load(cls, path: Path) -> "TextAttackEvaluation":
        return cls(TextAttackResult.from_json((path / "metrics.json").read_text()), _load_timings(path))

    @cached_property
    def figure_png(self) -> bytes:
        from rrec_core.reporting.text_attacks import plot_text_attacks

        return plot_text_attacks(self.result)

    def published(self) -> dict:
        return {"metrics": self.result.to_json().encode(), "figure": self.figure_png}
