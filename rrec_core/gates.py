"""Quality gates of scheduled retraining: a retrained model may replace the current one only if it is good
enough (a floor from params.yaml) and not worse than the model it replaces (beyond a stated tolerance).

The orchestration passes in the validation numbers of the new models and of the models a failed gate would
keep: the artefact on disk (`gate_numbers_of_artefact`), which after `dvc checkout`, `dvc pull` or a
`git checkout` of an older commit is not the last run's; the last materialization's metadata only where no
artefact is on disk. A failed gate keeps the artefact and blocks everything downstream
(orchestration/assets.py; under `dvc repro` too: the stages' outputs are `persist`, so DVC does not delete
them before the stage runs). Validation numbers only: the test set never decides anything.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rrec_core.config import GateConfig


class QualityGateError(RuntimeError):
    """A retrained model failed its quality gate; the message lists each failing model and number."""


@dataclass
class GateRow:
    model: str
    metric: str  # "valid_ndcg@10" | "valid_worst_case"
    new: float
    previous: float | None
    floor: float
    max_relative_drop: float
    passed: bool
    reason: str


@dataclass
class GateResult:
    rows: list[GateRow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows)

    def failures(self) -> list[str]:
        return [f"{r.model} {r.metric}: {r.reason}" for r in self.rows if not r.passed]

    def table(self) -> list[dict]:
        return [asdict(r) for r in self.rows]

    def markdown(self) -> str:
        lines = ["| model | metric | new | previous | floor | max drop | result |", "|---|---|---:|---:|---:|---:|---|"]
        for r in self.rows:
            prev = "—" if r.previous is None else f"{r.previous:.4f}"
            lines.append(f"| {r.model} | {r.metric} | {r.new:.4f} | {prev} | {r.floor:.4f} | "
                         f"{100 * r.max_relative_drop:.1f}% | {'pass' if r.passed else '**FAIL**: ' + r.reason} |")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.passed:
            raise QualityGateError("quality gate failed (the previous model is kept, nothing downstream runs): "
                                   + "; ".join(self.failures())
                                   + " — set gates.enabled: false (or --set gates.enabled=false) to accept it anyway")


def check_gate(new: dict[str, dict[str, float]], previous: dict[str, dict[str, float]] | None,
               cfg: GateConfig) -> GateResult:
    """new / previous: model name -> {"valid_ndcg@10": x, "valid_worst_case": y (adversarial models)}.

    Each number must reach its floor and may not fall more than its relative tolerance below the previous
    materialization's (where there is one, for the same model and metric)."""
    limits = {"valid_ndcg@10": (cfg.min_valid_ndcg, cfg.max_relative_drop),
              "valid_worst_case": (cfg.min_valid_worst_case, cfg.max_worst_case_relative_drop)}
    result = GateResult()
    for model, metrics in sorted(new.items()):
        for metric, value in sorted(metrics.items()):
            if metric not in limits:
                continue
            floor, drop = limits[metric]
            before = (previous or {}).get(model, {}).get(metric)
            reasons = []
            if value < floor:
                reasons.append(f"{value:.4f} is below the floor {floor:.4f}")
            if before is not None and value < before * (1 - drop):
                reasons.append(f"{value:.4f} is {100 * (1 - value / before):.1f}% below the previous {before:.4f} "
                               f"(tolerance {100 * drop:.1f}%)")
            result.rows.append(GateRow(model, metric, float(value), None if before is None else float(before), floor,
                                       drop, passed=not reasons, reason="; ".join(reasons) or "ok"))
    return result


def gate_numbers(histories: dict[str, list[dict]], best_epochs: dict[str, int]) -> dict[str, dict[str, float]]:
    """The validation numbers of each model's selected epoch, from its training history."""
    out: dict[str, dict[str, float]] = {}
    for name, history in histories.items():
        best = [h for h in history if h["epoch"] == best_epochs[name]]
        if not best:
            continue
        row = {"valid_ndcg@10": float(best[0]["valid_ndcg@10"])}
        if "valid_ndcg@10_attacked" in best[0]:
            row["valid_worst_case"] = float(best[0]["valid_ndcg@10_attacked"])
        out[name] = row
    return out


def gate_numbers_of_artefact(path: str | Path) -> dict[str, dict[str, float]] | None:
    """The gate numbers of the trained models saved at `path` (a TrainedModels artefact directory: models.json,
    each model's config.json with its best epoch and history.json), or None when no complete artefact is there."""
    path = Path(path)
    try:
        names = json.loads((path / "models.json").read_text())
        histories = {n: json.loads((path / n / "history.json").read_text()) for n in names}
        best = {n: int(json.loads((path / n / "config.json").read_text())["meta"]["best_epoch"]) for n in names}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return gate_numbers(histories, best) or None
