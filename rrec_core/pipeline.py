"""One function per pipeline stage. Dagster assets (and through them the CLI and `dvc repro`) call
exactly these, nothing more. Each takes the config sections it uses and returns an artefact
(rrec_core.artifacts); none writes a file: the IO manager saves the artefact and its published files.

    load_raw_data -> validate_and_split -> embed_item_text -> pretrain -> evaluate_pretrained
                                                                      -> distill_stage
                                        -> evaluate_cold_start_stage
                                        -> generate_gan_samples -> adversarial_train
                                        -> evaluate_poisoning_stage -> evaluate_robustness_stage
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from rrec_core.artifacts import (
    ColdStartEvaluation,
    DistillationEvaluation,
    GanSamples,
    ItemTextEmbeddings,
    PoisoningEvaluation,
    PoisoningGrid,
    PretrainEvaluation,
    RawData,
    Recommendations,
    RobustnessEvaluation,
    TextAttackEvaluation,
    TrainedModels,
    ValidatedData,
)
from rrec_core.config import (
    AdversarialConfig,
    ColdStartConfig,
    DataConfig,
    DistillConfig,
    EncoderConfig,
    EvalConfig,
    GanConfig,
    MFConfig,
    NewItemGuardConfig,
    PipelineConfig,
    PoisoningEvalConfig,
    PretrainConfig,
    RecommendConfig,
    RobustnessConfig,
    ScreenConfig,
    SplitConfig,
    TextAttackConfig,
    ValidationConfig,
)
from rrec_core.data.loaders import load_dataset
from rrec_core.data.split import split_interactions
from rrec_core.results import (
    ColdStartResult,
    DistillationResult,
    GanReport,
    ModelMetrics,
    PoisoningResult,
    PretrainResult,
)

log = logging.getLogger(__name__)


def load_raw_data(cfg: DataConfig, root: str | Path = ".") -> RawData:
    return RawData(load_dataset(cfg, root))


def validate_raw_data(raw: RawData, cfg: ValidationConfig):
    """The expectation suite's report (rrec_core.validation.ValidationReport); never raises on bad data."""
    from rrec_core.validation import validate_dataset

    return validate_dataset(raw.dataset.interactions, raw.dataset.items, cfg)


def validate_and_split(raw: RawData, vcfg: ValidationConfig, scfg: SplitConfig, report=None) -> ValidatedData:
    """Validate (raising DataValidationError that names file, row and column on failure), then split."""
    report = report if report is not None else validate_raw_data(raw, vcfg)
    report.raise_for_failures()
    ds = raw.dataset
    catalog = ds.items["item_id"].tolist() if ds.items is not None else None
    interactions, quarantine = screen_for_poisoning(ds.interactions, vcfg)
    split = split_interactions(interactions, scfg, catalog)
    changes = pd.DataFrame(columns=["row", "column", "kinds", "before", "after"])
    source_items = ds.items
    if source_items is not None and vcfg.sanitize_text:
        source_items, changes = sanitize_item_text(source_items)
    if source_items is not None:
        items = source_items.drop_duplicates("item_id").set_index("item_id").reindex(split.item_ids)
        items = items.reset_index().rename(columns={"index": "item_id"})
    else:  # implicit data without an item table: the id is the only text there is
        items = pd.DataFrame({"item_id": split.item_ids, "title": split.item_ids,
                              "year": pd.array([pd.NA] * split.n_items, dtype="Int64"), "genres": ""})
    return ValidatedData(split, items, report.to_dict(), ds.name, quarantine, changes)


def sanitize_item_text(items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items with title and genres sanitized, one row per changed cell: row (source line), column, kinds,
    before, after); see rrec_core.data.sanitize."""
    from rrec_core.data.sanitize import sanitize_frame

    clean, changes = sanitize_frame(items, ["title", "genres"])
    clean.attrs.update(items.attrs)
    for c in changes:
        log.warning("item text sanitized: %s row %s, column %s (%s)", items.attrs.get("source", "items"), c.row,
                    c.column, "+".join(c.kinds))
    table = pd.DataFrame({"row": [int(c.row) if isinstance(c.row, (int, np.integer)) else -1 for c in changes],
                          "column": [c.column for c in changes], "kinds": ["+".join(c.kinds) for c in changes],
                          "before": [c.before for c in changes], "after": [c.after for c in changes]})
    return clean, table


def screen_for_poisoning(interactions: pd.DataFrame, vcfg: ValidationConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions without suspect users, quarantine table: user_id, score, n_interactions).

    Suspects stay in the raw data and are listed with their scores; they are only kept out of training."""
    empty = pd.DataFrame({"user_id": pd.Series([], dtype="str"), "score": pd.Series([], dtype="float64"),
                          "n_interactions": pd.Series([], dtype="int64")})
    if not vcfg.screen.enabled:
        return interactions, empty
    from rrec_core.poisoning.screen import screen_users

    result = screen_users(interactions, vcfg.screen)
    if not result.flagged:
        return interactions, empty
    counts = interactions.groupby("user_id").size()
    quarantine = pd.DataFrame({"user_id": result.flagged,
                               "score": result.scores.reindex(result.flagged).to_numpy(dtype="float64"),
                               "n_interactions": counts.reindex(result.flagged).to_numpy(dtype="int64")})
    kept, _ = result.quarantine(interactions)
    kept.attrs.update(interactions.attrs)
    return kept, quarantine.sort_values("score", ascending=False, ignore_index=True)


def embed_item_text(data: ValidatedData, cfg: EncoderConfig, root: str | Path = ".", progress: bool = True
                    ) -> ItemTextEmbeddings:
    from rrec_core.lm.encoder import embed_items

    emb = embed_items(data.items, cfg, root=root, progress=progress)
    if emb.item_ids != data.split.item_ids:
        raise AssertionError("item text embeddings are not aligned with the split's item ids")
    return ItemTextEmbeddings(emb)


def pretrain(data: ValidatedData, text: ItemTextEmbeddings | None, cfg: PretrainConfig,
             progress: bool = True) -> TrainedModels:
    """Train every configured model. The hybrid warm-starts from MF-BPR when both are trained and
    `text_hybrid.warm_start` is set, so it can only keep or improve MF's validation NDCG@10.
    Early stopping looks at validation NDCG@10 only."""
    from rrec_core.lm.tower import LMTower
    from rrec_core.training.loop import build_model, train_recommender, warm_start_from

    eval_cfg = EvalConfig(ks=(10,))
    out = TrainedModels({}, {}, {})
    for kind in cfg.models:
        tcfg = cfg.mf_bpr if kind == "mf_bpr" else cfg.text_hybrid
        feats = text.emb.embeddings if (text is not None and kind == "text_hybrid") else None
        model = build_model(kind, data.split, tcfg, feats)
        hybrid = cfg.text_hybrid
        warm = kind == "text_hybrid" and hybrid.warm_start and "mf_bpr" in out.models
        if warm:
            warm_start_from(model, out.models["mf_bpr"])
        tower = None
        if kind == "text_hybrid" and hybrid.lm_finetune_layers > 0:
            if text is None:
                raise ValueError("text_hybrid needs the item_text_embeddings asset")
            # the same model, tokenization and pooling that produced the frozen embeddings
            tower = LMTower(text.emb.texts, EncoderConfig(**text.emb.config), hybrid.lm_finetune_layers)
        t0 = time.perf_counter()
        is_hybrid = kind == "text_hybrid"
        if tcfg.world_size > 1:
            result = _train_data_parallel(kind, model, data, tcfg, eval_cfg, tower, warm,
                                          hybrid.text_lr if is_hybrid else None)
            log.info("%s: best epoch %d, valid ndcg@10 %.4f, %.1fs (%d processes)", kind, result.best_epoch,
                     result.best_valid.get("ndcg@10", float("nan")), time.perf_counter() - t0, tcfg.world_size)
            _record(out, kind, result, None)
            continue
        result = train_recommender(model, data.split, tcfg, eval_cfg, lm_tower=tower, progress=progress,
                                   warm_start=warm, text_lr=hybrid.text_lr if is_hybrid else None,
                                   lm_lr=hybrid.lm_lr if is_hybrid else None,
                                   lm_update_every=hybrid.lm_update_every if is_hybrid else 0,
                                   checkpoint_dir=checkpoint_dir("pretrained_recommender", kind) if tcfg.checkpoint
                                   else None)
        log.info("%s: best epoch %d, valid ndcg@10 %.4f, %.1fs", kind, result.best_epoch,
                 result.best_valid.get("ndcg@10", float("nan")), time.perf_counter() - t0)
        _record(out, kind, result, tower)
    return out


def _train_data_parallel(kind: str, model, data: ValidatedData, tcfg: MFConfig, eval_cfg: EvalConfig, tower,
                         warm: bool, text_lr: float | None):
    """pretrain's loop in `tcfg.world_size` DistributedDataParallel processes (same model as one process)."""
    from rrec_core.training.distributed import train_distributed

    if tower is not None:
        raise ValueError(f"pretrain.{kind}.world_size > 1 does not support lm_finetune_layers > 0 "
                         "(the tuned layers are not replicated); set one of them back")
    return train_distributed(data.split, tcfg, tcfg.world_size, tcfg.dist_backend, kind=kind, model=model,
                             eval_cfg=eval_cfg, text_lr=text_lr, warm_start=warm)


def adversarial_train(pretrained: TrainedModels, data: ValidatedData, text: ItemTextEmbeddings | None,
                      cfg: AdversarialConfig, progress: bool = True, gan: GanSamples | None = None) -> TrainedModels:
    """Adversarially fine-tune each configured pretrained model (warm start; robust model selection).
    With `cfg.gan_weighting`, each user's pairs are weighted by 1 - P(fake) from the detector fitted on
    the GAN's profiles (`gan`, required then)."""
    from rrec_core.lm.tower import LMTower
    from rrec_core.training.adversarial import adversarial_finetune

    weights = None
    if cfg.gan_weighting:
        if gan is None:
            raise ValueError("adversarial.gan_weighting needs the gan_samples asset (with its fitted detector)")
        from rrec_core.poisoning.detector import FakeDetector, suspicion_weights

        weights, p_fake = suspicion_weights(FakeDetector.from_dict(gan.report.detector), data.split)
        log.info("GAN-trained weights: mean %.4f, min %.4f, users below 0.5: %d", float(weights.mean()),
                 float(weights.min()), int((weights < 0.5).sum()))
    out = TrainedModels({}, {}, {})
    for kind in cfg.models:
        if kind not in pretrained.models:
            raise ValueError(f"adversarial.models names {kind!r}, which pretraining did not produce")
        tower = None
        if kind in pretrained.towers and text is not None:
            # continue from the LM layers pretraining tuned; text-side FGM perturbs their input
            tower = LMTower(text.emb.texts, EncoderConfig(**text.emb.config),
                            pretrained.models[kind].meta["config"]["lm_finetune_layers"])
            tower.load_state_dict(pretrained.towers[kind])
        result = adversarial_finetune(pretrained.models[kind], data.split, cfg, EvalConfig(ks=(10,)),
                                      lm_tower=tower, progress=progress, user_weights=weights,
                                      checkpoint_dir=checkpoint_dir("adversarial_recommender", kind)
                                      if cfg.train.checkpoint else None)
        _record(out, kind, result, tower)
    return out


def previous_worst_case(artefact: Path, data: ValidatedData, cfg: AdversarialConfig) -> Callable[[str], float | None]:
    """For the quality gate (rrec_core.gates.remeasure_previous): the validation worst case, under `cfg`'s
    selection attack, of each adversarial model saved at `artefact` (the model a retraining would replace);
    None where there is no such model or it has tuned LM layers (its text tower is not rebuilt here)."""
    from rrec_core.training.adversarial import validation_worst_case

    loaded: list[TrainedModels | None] = []

    def measure(name: str) -> float | None:
        if not loaded:
            try:
                loaded.append(TrainedModels.load(artefact))
            except (OSError, ValueError, KeyError):
                loaded.append(None)
        previous = loaded[0]
        if previous is None or name not in previous.models or name in previous.towers:
            return None
        return validation_worst_case(previous.models[name], data.split, cfg)

    return measure


def checkpoint_dir(stage: str, model: str) -> Path:
    """Where a stage's training loop keeps its resumable checkpoint (beside the artefacts, not one of them)."""
    from rrec_core.outputs import ARTIFACTS_DIR

    return Path(ARTIFACTS_DIR) / ".checkpoints" / stage / model


def _record(out: TrainedModels, kind: str, result, tower) -> None:
    """Keep a trained model, its curve and its tuned LM layers."""
    out.models[kind], out.histories[kind] = result.model, result.history
    if tower is not None:
        out.towers[kind] = tower.state_dict()


def evaluate_pretrained(models: TrainedModels, data: ValidatedData, cfg: EvalConfig) -> PretrainEvaluation:
    """Test metrics (train and valid masked) and validation metrics (train masked) per model."""
    from rrec_core.evaluation.ranking import evaluate_model

    out: dict[str, ModelMetrics] = {}
    seconds: dict[str, float] = {}
    for name, model in models.models.items():
        t0 = time.perf_counter()
        test = evaluate_model(model, data.split, "test", cfg)
        valid = evaluate_model(model, data.split, "valid", cfg)
        out[name] = ModelMetrics(test={k: round(v, 6) for k, v in test.items()},
                                 valid={k: round(v, 6) for k, v in valid.items()},
                                 best_epoch=int(model.meta.get("best_epoch", 0)))
        seconds[f"{name}/eval"] = round(time.perf_counter() - t0, 3)
        seconds[f"{name}/train"] = round(float(model.meta.get("train_seconds", 0.0)), 1)
    return PretrainEvaluation(PretrainResult(out), seconds)


def evaluate_cold_start_stage(data: ValidatedData, text: ItemTextEmbeddings, cfg: ColdStartConfig,
                              pretrain_cfg: PretrainConfig, eval_cfg: EvalConfig,
                              progress: bool = False, guard: NewItemGuardConfig | None = None) -> ColdStartEvaluation:
    """Hold items out of training and compare how MF-BPR, the hybrid, the treated hybrid and the
    controls rank them (rrec_core.evaluation.cold_start)."""
    from rrec_core.evaluation.cold_start import evaluate_cold_start

    if not cfg.enabled:
        return ColdStartEvaluation(ColdStartResult(enabled=False))
    result, seconds = evaluate_cold_start(data, text.emb.embeddings, pretrain_cfg, cfg, eval_cfg, progress=progress,
                                          guard=guard)
    return ColdStartEvaluation(result, seconds)


def distill_stage(pretrained: TrainedModels, data: ValidatedData, text: ItemTextEmbeddings, cfg: DistillConfig,
                  eval_cfg: EvalConfig, root: str | Path = ".", progress: bool = False) -> DistillationEvaluation:
    """Distill the pretrained text hybrid into a student with a shallower encoder; compare quality kept
    with encoding and scoring time gained (rrec_core.evaluation.distillation)."""
    from rrec_core.evaluation.distillation import evaluate_distillation

    if not cfg.enabled:
        return DistillationEvaluation(DistillationResult(enabled=False))
    result, students, seconds = evaluate_distillation(data, text, pretrained.models, cfg, eval_cfg, root=root,
                                                      progress=progress)
    return DistillationEvaluation(result, students, seconds)


def generate_gan_samples(data: ValidatedData, cfg: GanConfig, screen: ScreenConfig) -> GanSamples:
    """Train the GAN on the training interactions, generate round(fake_ratio * users) fake profiles
    pushing `n_targets` unpopular items, and measure their stealth against heuristic fakes: item-
    popularity TV distance, profile length, and the poisoning screen's detection rate on each."""
    from rrec_core.poisoning import detection_metrics, inject_attack, screen_users, stealth_stats
    from rrec_core.poisoning.detector import train_detector
    from rrec_core.poisoning.gan import gan_attack, train_gan

    train = data.split.to_frame().query("part == 'train'")[["user_id", "item_id"]].reset_index(drop=True)
    train["timestamp"] = np.arange(len(train), dtype=np.int64)
    train = train.astype({"user_id": "str", "item_id": "str"})
    result = train_gan(train, cfg)
    gan = gan_attack(train, cfg=cfg, result=result)
    attacks: dict[str, dict[str, float]] = {}
    for name, poisoned in (("gan", gan), *((a, inject_attack(train, attack=a, targets=gan.targets,
                                                              fake_ratio=cfg.fake_ratio, seed=cfg.seed))
                                          for a in ("random", "bandwagon"))):
        flagged = screen_users(poisoned.interactions, screen).flagged
        attacks[name] = {**stealth_stats(train, poisoned.injected, exclude_items=gan.targets),
                         **{f"screen_{k}": v for k, v in detection_metrics(flagged, poisoned.fake_users).items()}}
    adv_epochs = [row for row in result.log if "d_acc" in row]  # the log also holds warm-up/calibration rows
    # the fake-profile detector the adversarial fine-tuning weights users with (rrec_core.poisoning.detector)
    detector = train_detector(train, gan.injected, screen, seed=cfg.seed).to_dict()
    report = GanReport(n_fake=len(gan.fake_users), targets=list(gan.targets), log=result.log, attacks=attacks,
                       final_d_acc=adv_epochs[-1]["d_acc"] if adv_epochs else None, detector=detector)
    return GanSamples(result, gan.injected.reset_index(drop=True), report, {"train": round(result.seconds, 1)})


def evaluate_poisoning_stage(raw: RawData, data: ValidatedData, gan: GanSamples | None, cfg: PoisoningEvalConfig,
                             screen: ScreenConfig, pretrain_cfg: MFConfig, adv_cfg: AdversarialConfig,
                             progress: bool = False) -> PoisoningEvaluation:
    """Inject each configured attack, retrain MF-BPR and its adversarial fine-tuning from scratch per arm
    (clean, undefended, GAN-weighted fine-tuning, screen + GAN weights), measure on real users."""
    from rrec_core.evaluation.poisoning import evaluate_poisoning
    from rrec_core.poisoning.detector import FakeDetector

    if not cfg.enabled:  # the stage's outputs still exist (DVC tracks them), saying so
        return PoisoningEvaluation(PoisoningResult(enabled=False))
    for name in {"gan", "gan_promotion"}.intersection(cfg.attacks):
        if gan is None:
            raise ValueError(f"poisoning.attacks names {name}, which needs the gan_samples asset")
    detector = FakeDetector.from_dict(gan.report.detector) if gan is not None else None
    # the rows the validation stage screened: every validated interaction, as loaded (ratings, timestamps)
    result, seconds = evaluate_poisoning(raw.dataset.interactions, data.split, cfg, screen, pretrain_cfg, adv_cfg,
                                         detector, gan.result if gan is not None else None, progress=progress)
    return PoisoningEvaluation(result, seconds)


def evaluate_poisoning_grid_cell(raw: RawData, data: ValidatedData, gan: GanSamples | None, cell_key: str,
                                 cfg: PipelineConfig) -> dict:
    """One cell of the poisoning grid (rrec_core.evaluation.poisoning_grid), its threads a share of the
    machine's cores (cells run `poisoning_grid.workers` at a time)."""
    import os

    from rrec_core.evaluation.poisoning_grid import GridCell, evaluate_grid_cell

    grid = cfg.poisoning_grid
    cell = GridCell.from_key(cell_key, grid)
    if cell.attack in ("gan", "gan_promotion") and gan is None:
        raise ValueError(f"poisoning_grid.attacks names {cell.attack}, which needs the gan_samples asset")
    threads = max(1, (os.cpu_count() or 1) // grid.workers)
    return evaluate_grid_cell(raw.dataset.interactions, data.split, cell, grid, cfg.poisoning, cfg.validation.screen,
                              cfg.pretrain.mf_bpr, cfg.adversarial, gan.result if gan is not None else None,
                              threads=threads)


def summarize_poisoning_grid(cells: list[dict], cfg: PipelineConfig) -> PoisoningGrid:
    """The grid's cells (in grid order) and their summary rows."""
    from rrec_core.evaluation.poisoning_grid import grid_cells, summarize_grid

    order = {c.key: i for i, c in enumerate(grid_cells(cfg.poisoning_grid))}
    cells = sorted(cells, key=lambda c: order.get(c["cell"], len(order)))
    config = {k: getattr(cfg, k).model_dump(mode="json") for k in ("poisoning_grid", "poisoning", "adversarial")}
    config["pretrain.mf_bpr"] = cfg.pretrain.mf_bpr.model_dump(mode="json")
    config["validation.screen"] = cfg.validation.screen.model_dump(mode="json")
    return PoisoningGrid(cells, summarize_grid(cells), config)


def evaluate_robustness_stage(pretrained: TrainedModels, adversarial: TrainedModels, data: ValidatedData,
                              cfg: RobustnessConfig, eval_cfg: EvalConfig, progress: bool = True,
                              poisoning: PoisoningEvaluation | None = None,
                              text_attacks: TextAttackEvaluation | None = None) -> RobustnessEvaluation:
    """Attack every pretrained and adversarial model; the report carries the poisoning and text tampering
    sections too."""
    from rrec_core.evaluation.robustness import evaluate_robustness

    models = {f"pretrained/{k}": m for k, m in pretrained.models.items()}
    models.update({f"adversarial/{k}": m for k, m in adversarial.models.items()})
    result, seconds = evaluate_robustness(models, data.split, cfg, eval_cfg, progress=progress)
    return RobustnessEvaluation(result, poisoning.result if poisoning is not None else None, seconds,
                                text_attacks.result if text_attacks is not None else None)


def recommend_stage(pretrained: TrainedModels, adversarial: TrainedModels, data: ValidatedData,
                    cfg: RecommendConfig) -> Recommendations:
    """Top-k new items for every user from the configured model (rrec_core.recommend)."""
    from rrec_core.recommend import recommend

    stage, _, name = cfg.model.partition("/")
    models = (pretrained if stage == "pretrained" else adversarial).models
    if name not in models:
        raise ValueError(f"recommendations.model={cfg.model!r}: the {stage} stage trained only {sorted(models)}")
    top = recommend(models[name], data.split, data.items, k=cfg.k, quarantine=data.quarantine)
    return Recommendations(top, cfg.model, cfg.k)


def evaluate_text_attack_stage(pretrained: TrainedModels, adversarial: TrainedModels, data: ValidatedData,
                               text: ItemTextEmbeddings, cfg: TextAttackConfig,
                               guard: NewItemGuardConfig | None = None) -> TextAttackEvaluation:
    """Each text attack against each model that reads text, warm and cold targets, MF-BPR as the control
    (rrec_core.evaluation.text_attacks)."""
    from rrec_core.evaluation.text_attacks import evaluate_text_attacks

    models: dict = {}
    towers: dict = {}
    for stage, trained in (("pretrained", pretrained), ("adversarial", adversarial)):
        for name in ("text_hybrid", "mf_bpr"):  # the text hybrid first: its targets are also evaluated cold
            if name in trained.models and not (stage == "adversarial" and name == "mf_bpr"):
                models[f"{stage}/{name}"] = trained.models[name]
                if name in trained.towers:
                    towers[f"{stage}/{name}"] = trained.towers[name]
    models = dict(sorted(models.items(), key=lambda kv: (kv[0].endswith("mf_bpr"), kv[0].startswith("adversarial"))))
    result, seconds = evaluate_text_attacks(data.split, data.items, text.emb.config, models, cfg,
                                            text.emb.config["text_template"], towers, guard)
    return TextAttackEvaluation(result, seconds)
