"""The artefacts that flow between pipeline stages, each with `save(dir)` / `load(dir)`.

Dagster's IO manager and the DVC stages both persist these through the same two methods, so an
asset materialized in the UI and a stage run by `dvc repro` produce identical files. Tables are
Parquet, tensors safetensors, everything else JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from rrec_core.data.loaders import Dataset
from rrec_core.data.split import Split
from rrec_core.encoder import TextEmbeddings
from rrec_core.io import load_tensors, read_json, save_tensors, write_json, write_parquet
from rrec_core.models import Recommender, load_recommender, save_recommender


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

    def save(self, path: Path) -> None:
        self.split.save(path)
        write_parquet(path / "items.parquet", self.items)
        write_parquet(path / "quarantine.parquet", self.quarantine)
        write_json(path / "validation_report.json", self.report)
        write_json(path / "meta.json", {"name": self.name})

    @classmethod
    def load(cls, path: Path) -> "ValidatedData":
        q = path / "quarantine.parquet"
        return cls(Split.load(path), pd.read_parquet(path / "items.parquet"),
                   read_json(path / "validation_report.json"), read_json(path / "meta.json")["name"],
                   pd.read_parquet(q) if q.exists() else pd.DataFrame(columns=["user_id", "score", "n_interactions"]))


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


@dataclass
class Evaluation:
    """Metrics per model (and per split part), as written to metrics/*.json."""

    metrics: dict

    def save(self, path: Path) -> None:
        write_json(path / "metrics.json", self.metrics)

    @classmethod
    def load(cls, path: Path) -> "Evaluation":
        return cls(read_json(path / "metrics.json"))


def tensor_summary(t: torch.Tensor) -> dict:
    return {"shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", ""),
            "mean_norm": float(t.float().norm(dim=-1).mean()) if t.numel() else 0.0}


@dataclass
class GanSamples:
    """The trained fake-profile generator, the profiles it generated and how they were judged."""

    result: "object"  # rrec_core.poisoning.gan.GanResult
    profiles: pd.DataFrame  # interactions of the generated users (contract columns)
    report: dict  # targets, training log, stealth statistics, screen detection rates

    def save(self, path: Path) -> None:
        from rrec_core.poisoning.gan import save_generator

        save_generator(self.result, path / "generator")
        write_parquet(path / "profiles.parquet", self.profiles)
        write_json(path / "report.json", self.report)

    @classmethod
    def load(cls, path: Path) -> "GanSamples":
        from rrec_core.poisoning.gan import load_generator

        return cls(load_generator(path / "generator"), pd.read_parquet(path / "profiles.parquet"),
                   read_json(path / "report.json"))
