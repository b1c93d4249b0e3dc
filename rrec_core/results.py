"""Typed results of the evaluation stages, with JSON round trips.

The structure is typed (models, arms, attacks, norms are fields); a set of top-k metrics is a
`Metrics` mapping by name ("ndcg@10", "target_hit@50"), since its keys follow the configured cut-offs.
The published metrics files are these models' JSON (`to_json`), read back with `from_json`.
Timings are never part of a result: they differ run to run, and the metrics files are diffed.
"""
from __future__ import annotations

import json
from typing import Any, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, RootModel

Metrics = dict[str, float]
"""Metric name -> value, e.g. {"ndcg@10": 0.28, "recall@10": 0.24}."""

T = TypeVar("T", bound="Result")


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls: type[T], text: str) -> T:
        return cls.model_validate_json(text)


class RootResult(RootModel):
    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str):
        return cls.model_validate_json(text)


# -- pretraining -----------------------------------------------------------------------------------

class ModelMetrics(Result):
    """Test metrics (train and valid masked) and validation metrics (train masked) of one model."""

    test: Metrics
    valid: Metrics
    best_epoch: int


class PretrainResult(RootResult):
    """Model name -> its metrics (metrics/pretrain.json)."""

    root: dict[str, ModelMetrics]

    @property
    def models(self) -> dict[str, ModelMetrics]:
        return self.root


class ColdStartModel(Result):
    """Test metrics of one model or control on the cold-start split: all test pairs, warm items', cold items'."""

    all: Metrics
    warm: Metrics
    cold: Metrics
    best_epoch: Optional[int] = None


class ColdStartResult(Result):
    """The item cold-start evaluation (metrics/cold_start.json); `enabled: false` when it was switched off."""

    enabled: bool = True
    item_share: float = 0.0
    seed: int = 0
    n_cold_valid: int = 0
    n_cold_test: int = 0
    n_cold_test_pairs: int = 0
    cold_test_items: list[str] = []
    models: dict[str, ColdStartModel] = {}


class DistilledModel(Result):
    """One model of the distillation stage: the teacher, a student, its control, the ID-only reference."""

    test: Metrics
    valid: Metrics
    best_epoch: Optional[int] = None
    encoder_layers: Optional[int] = None
    """Transformer layers an item's text passes through to be scored (0: the LM's token embeddings alone;
    null: no language model at all)."""
    ndcg_retained: float
    """Test NDCG@10 / the teacher's."""


class DistillationResult(Result):
    """Knowledge distillation (metrics/distillation.json); `enabled: false` when it was switched off.
    How long each model takes to encode the catalogue and to score is in the stage's timings."""

    enabled: bool = True
    teacher: str = ""
    teacher_layers: int = 0
    student_layers: int = 0
    top_k: int = 0
    n_random: int = 0
    temperature: float = 0.0
    weight: float = 0.0
    models: dict[str, DistilledModel] = {}


# -- robustness to embedding attacks ---------------------------------------------------------------

class NormStats(Result):
    mean: float = 0.0
    median: float = 0.0
    p95: float = 0.0
    max: float = 0.0


class EmbeddingNorms(Result):
    """L2 norms of the user and item vectors an attack perturbs (absolute radii mean nothing without them)."""

    user: NormStats
    item: NormStats


class AttackOutcome(Result):
    """One attack of the grid against one model."""

    attack: str
    """fgsm or pgd."""
    objective: str = "bpr"
    """What the attacker maximizes: bpr (held-out pairs vs sampled negatives), listwise or margin."""
    restarts: int = 1
    steps: int
    norm: str
    scale: str
    eps: float
    metrics: Metrics
    ndcg_kept: float
    """Attacked NDCG@10 / clean NDCG@10."""


class WorstCase(Result):
    """Per user, the worst NDCG@10 over every attack of the suite at one radius (AutoAttack's idea):
    each attack is one valid perturbation of the tables; a user counts at the one that hurt it most."""

    norm: str
    scale: str
    eps: float
    ndcg: float
    """Mean over users of the per-user minimum NDCG@10."""
    ndcg_kept: float
    """ndcg / clean NDCG@10."""
    strongest_single: str
    """The single attack with the lowest mean NDCG@10 at this radius."""
    strongest_single_ndcg: float
    worst_for: dict[str, float]
    """Attack name -> share of users for whom it was the worst (ties to the first in the suite)."""


class PerUserOutcome(Result):
    """NDCG@10 and co. under the per-user (targeted) attacker at one radius: each user attacked alone, with
    every item row's budget spent against it (rrec_core.attacks.targeted)."""

    norm: str
    scale: str
    eps: float
    steps: int
    metrics: Metrics
    ndcg_kept: float


class ModelRobustness(Result):
    clean: Metrics
    norms: EmbeddingNorms
    attacks: list[AttackOutcome]
    worst_case: list[WorstCase] = []
    """The shared threat model: one perturbation of the tables for every user."""
    per_user: list[PerUserOutcome] = []
    """The targeted threat model: a perturbation per user."""


class RobustnessResult(Result):
    """Every model under every attack of the grid (metrics/robustness.json)."""

    grid: list[str]
    models: dict[str, ModelRobustness]


# -- data poisoning --------------------------------------------------------------------------------

class StagePair(Result):
    """The same arm's pretrained model and its adversarial fine-tuning."""

    pretrained: dict[str, Optional[float]]
    adversarial: dict[str, Optional[float]]


class ScreenDetection(Result):
    precision: float
    recall: float
    f1: float
    flagged: float
    injected: float
    true_positives: float


class DetectorScores(Result):
    """P(fake) of the GAN-trained detector on the poisoned data."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    p_fake_mean_fakes: Optional[float]
    p_fake_mean_real: float
    p_fake_max_real: float
    real_above_half: int


class PoisoningAttackResult(Result):
    n_fake: int
    screen: ScreenDetection
    stealth: Optional[dict[str, float]] = None
    """Out-of-fold AUC of real-vs-fake classifiers (rrec_core.poisoning.stealth; 0.5 = indistinguishable)
    and the fakes' profile lengths beside the real ones."""
    detector: Optional[DetectorScores] = None
    arms: dict[str, StagePair]
    """undefended, gan_ft (when a detector exists), robust (when poisoning.robust is set), defended."""
    defended_ratio: dict[str, dict[str, Optional[float]]]
    """stage -> measure -> defended effect / undefended effect (None: the undefended attack did not move it)."""


class PoisoningResult(Result):
    """metrics/poisoning.json."""

    enabled: bool
    targets: list[str] = []
    fake_ratio: float = 0.0
    seed: int = 0
    clean: Optional[StagePair] = None
    attacks: dict[str, PoisoningAttackResult] = {}
    detector: Optional[dict[str, Any]] = None
    """The fine-tuning detector's fit statistics."""
    config: dict[str, Any] = {}
    """The configuration the arms were trained with (pretrain.mf_bpr, adversarial, validation.screen)."""


# -- GAN samples -----------------------------------------------------------------------------------

class GanReport(Result):
    """How the GAN's fakes were judged, beside heuristic fakes for the same targets."""

    n_fake: int
    targets: list[str]
    log: list[dict[str, Any]]
    """Per-epoch training log (warm-up, calibration and adversarial rows)."""
    attacks: dict[str, dict[str, float]]
    """gan / random / bandwagon -> stealth statistics and screen detection rates."""
    final_d_acc: Optional[float]
    detector: dict[str, Any]
    """The fitted FakeDetector (FakeDetector.to_dict())."""

    def published(self) -> dict[str, Any]:
        """What metrics/gan.json holds: the comparison, not the log or the detector's weights."""
        return {"n_fake": self.n_fake, "attacks": self.attacks, "final_d_acc": self.final_d_acc}


# -- text tampering --------------------------------------------------------------------------------

class TargetExposure(Result):
    """Mean over the targets, each over its audience (real users who never interacted with it)."""

    hr10: float = 0.0
    hr50: float = 0.0
    """Exposure@50: the share of the audience with the target in its top 50."""
    percentile: float = 0.0
    """Mean rank percentile of the target among each audience user's candidates (1 = top)."""


class TextAttackRow(Result):
    budget: int
    undefended: TargetExposure
    sanitized: TargetExposure
    """The same attacked titles after the validation stage's sanitizer (the defence)."""
    hr50_gain: float
    """undefended.hr50 - the clean hr50."""
    sanitized_hr50_gain: float
    test_ndcg10: float
    """Test NDCG@10 of the model with every target's attacked text in place."""
    edit_distance: float
    lm_similarity: float
    """Mean cosine similarity of the clean and the attacked text under the encoder."""
    survives_sanitizer: float
    """Share of attacked titles the sanitizer does not restore."""
    steps: float
    """Mean greedy steps taken (an attack stops when no edit helps)."""
    examples: list[dict] = []


class TextAttackModel(Result):
    reads_text: bool
    targets_cold: bool
    """True: the targets are served as new items (no ID row of their own: generated from their text)."""
    new_item_guard: bool = False
    """True: the cold targets are served through a NewItemGuard (rrec_core.models.new_items), and every
    attack searched against that guarded serving."""
    clean_test_ndcg10: float
    clean: TargetExposure
    attacks: dict[str, TextAttackRow] = {}


class TextAttackResult(Result):
    """Text tampering evaluation (metrics/text_attacks.json); `enabled: false` when switched off."""

    enabled: bool = True
    targets: list[str] = []
    mean_audience: float = 0.0
    models: dict[str, TextAttackModel] = {}
