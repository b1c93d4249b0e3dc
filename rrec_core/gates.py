"""Quality gates of scheduled retraining: a retrained model may replace the current one only if it is good
enough (a floor from params.yaml) and not worse than the model it replaces (beyond a stated tolerance).

The orchestration passes in the validation numbers of the new models and of the models a failed gate would
keep: the artefact on disk (`gate_numbers_of_artefact`), which after `dvc checkout`, `dvc pull` or a
`git checkout` of an older commit is not the last run's; the last materialization's metadata only where no
artefact is on disk. A failed gate keeps the artefact and blocks everything downstream
(orchestration/assets.py; under `dvc repro` too: the stages' outputs are `persist`, so DVC does not delete
them before the stage runs). Validation numbers only: the test set never decides anything.

A validation worst case is a number of one attack (radius, norm, scale, objectives, steps). When the
configuration changes that attack, the previous model is measured again under the new attack
(`remeasure_previous`), so the two numbers measure the same thing; where that cannot be done (no previous
model on disk, or one with tuned LM layers) the two are not compared (the floor still applies) and the
gate's table says so.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rrec_core.config import GateConfig


class QualityGateError(RuntimeError):
    """A retrained model failed its quality gate; the message lists each failing model and number."""


WORST_CASE_ATTACK = "valid_worst_case_attack"
"""Key of the gate numbers that names the attack behind "valid_worst_case" (`selection_attack`)."""
REMEASURED = "valid_worst_case_remeasured"
"""Key of a previous model's gate numbers whose worst case was measured again under the new attack: what it
had been, under which attack."""

GateNumbers = dict[str, dict[str, float | str]]
"""model name -> {"valid_ndcg@10": x, "valid_worst_case": y, WORST_CASE_ATTACK: "..." (adversarial models)}"""


@dataclass
class GateRow:
    model: str
    metric: str  # "valid_ndcg@10" | "valid_worst_case"
    new: float
    previous: float | None  # None: nothing comparable before (no previous model, or another attack's number)
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
                         f"{100 * r.max_relative_drop:.1f}% | {_verdict(r)} |")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.passed:
            raise QualityGateError("quality gate failed (the previous model is kept, nothing downstream runs): "
                                   + "; ".join(self.failures())
                                   + " — set gates.enabled: false (or --set gates.enabled=false) to accept it anyway")


def _verdict(row: GateRow) -> str:
    if not row.passed:
        return "**FAIL**: " + row.reason
    return "pass" if row.reason == "ok" else f"pass ({row.reason})"


def check_gate(new: GateNumbers, previous: GateNumbers | None, cfg: GateConfig) -> GateResult:
    """new / previous: `GateNumbers` of the retrained models and of the models they would replace.

    Each number must reach its floor and may not fall more than its relative tolerance below the previous
    materialization's (where there is one, for the same model and metric, and for the worst case the same
    selection attack)."""
    limits = {"valid_ndcg@10": (cfg.min_valid_ndcg, cfg.max_relative_drop),
              "valid_worst_case": (cfg.min_valid_worst_case, cfg.max_worst_case_relative_drop)}
    result = GateResult()
    for model, metrics in sorted(new.items()):
        before_all = (previous or {}).get(model, {})
        for metric, value in sorted(metrics.items()):
            if metric not in limits:
                continue
            value = float(value)
            floor, drop = limits[metric]
            before = before_all.get(metric)
            reasons, notes = [], []
            if metric == "valid_worst_case" and before is not None and REMEASURED in before_all:
                notes.append(f"previous model measured again under this attack (it had {before_all[REMEASURED]})")
            if metric == "valid_worst_case" and before is not None:
                attack, attack_before = metrics.get(WORST_CASE_ATTACK), before_all.get(WORST_CASE_ATTACK)
                if attack is not None and attack_before is not None and attack != attack_before:
                    notes.append(f"not compared with the previous {float(before):.4f}: measured by another selection "
                                 f"attack ({attack_before}; now {attack})")
                    before = None
            if value < floor:
                reasons.append(f"{value:.4f} is below the floor {floor:.4f}")
            if before is not None and value < float(before) * (1 - drop):
                reasons.append(f"{value:.4f} is {100 * (1 - value / float(before)):.1f}% below the previous "
                               f"{float(before):.4f} (tolerance {100 * drop:.1f}%)")
            result.rows.append(GateRow(model, metric, value, None if before is None else float(before), floor,
                                       drop, passed=not reasons, reason="; ".join(reasons + notes) or "ok"))
    return result


def remeasure_previous(new: GateNumbers, previous: GateNumbers | None,
                       measure: Callable[[str], float | None]) -> GateNumbers | None:
    """`previous` with each worst case that another selection attack than the new model's measured replaced
    by `measure(model)`: the previous model's validation worst case under the new attack (None: it cannot be
    measured, and the number stays as it was, which `check_gate` then does not compare)."""
    if previous is None:
        return None
    out = {name: dict(numbers) for name, numbers in previous.items()}
    for name, numbers in new.items():
        attack, before = numbers.get(WORST_CASE_ATTACK), out.get(name, {})
        if attack is None or "valid_worst_case" not in before or before.get(WORST_CASE_ATTACK) in (None, attack):
            continue
        value = measure(name)
        if value is None:
            continue
        before[REMEASURED] = f"{float(before['valid_worst_case']):.4f} under {before[WORST_CASE_ATTACK]}"
        before["valid_worst_case"], before[WORST_CASE_ATTACK] = float(value), attack
    return out


def selection_attack(meta: dict) -> str | None:
    """The attack behind an adversarial model's validation worst case, from its saved meta (None: no
    adversarial fine-tuning): what `training.adversarial.validation_robustness` runs."""
    adv = meta.get("adversarial")
    if not isinstance(adv, dict):
        return None
    objectives = "pairwise PGD" if adv.get("select_on") == "bpr" else "min of pairwise, listwise and margin PGD"
    return (f"{objectives}, {adv.get('norm')} eps {adv.get('eps')} {adv.get('scale')}, "
            f"{adv.get('select_attack_steps')} steps, seed {(adv.get('train') or {}).get('seed')}")


def gate_numbers(histories: dict[str, list[dict]], best_epochs: dict[str, int],
                 metas: dict[str, dict] | None = None) -> GateNumbers:
    """The validation numbers of each model's selected epoch, from its training history; with the models'
    meta, the worst case's selection attack beside it."""
    out: GateNumbers = {}
    for name, history in histories.items():
        best = [h for h in history if h["epoch"] == best_epochs[name]]
        if not best:
            continue
        row: dict[str, float | str] = {"valid_ndcg@10": float(best[0]["valid_ndcg@10"])}
        if "valid_ndcg@10_attacked" in best[0]:
            row["valid_worst_case"] = float(best[0]["valid_ndcg@10_attacked"])
            attack = selection_attack((metas or {}).get(name) or {})
            if attack is not None:
                row[WORST_CASE_ATTACK] = attack
        out[name] = row
    return out


def gate_numbers_of_artefact(path: str | Path) -> GateNumbers | None:
    """The gate numbers of the trained models saved at `path` (a TrainedModels artefact directory: models.json,
    each model's config.json with its meta and history.json), or None when no complete artefact is there."""
    path = Path(path)
    try:
        names = json.loads((path / "models.json").read_text())
        histories = {n: json.loads((path / n / "history.json").read_text()) for n in names}
        metas = {n: json.loads((path / n / "config.json").read_text())["meta"] for n in names}
        best = {n: int(metas[n]["best_epoch"]) for n in names}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return gate_numbers(histories, best, metas) or None
