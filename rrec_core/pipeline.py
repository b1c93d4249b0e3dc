"""One function per pipeline stage. Dagster assets and the CLI call exactly these, nothing more.

    load_raw_data -> validate_and_split -> embed_item_text -> pretrain -> evaluate_pretrained
                                                          -> adversarial_train -> evaluate_robustness_stage
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rrec_core.artifacts import Evaluation, GanSamples, ItemTextEmbeddings, RawData, TrainedModels, ValidatedData
from rrec_core.config import (AdversarialConfig, DataConfig, EncoderConfig, EvalConfig, GanConfig, PoisoningEvalConfig,
                              PretrainConfig, TrainConfig,
                              RobustnessConfig, ScreenConfig, SplitConfig, ValidationConfig)
from rrec_core.data.loaders import load_dataset
from rrec_core.data.split import split_interactions
from rrec_core.io import write_json

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
    if ds.items is not None:
        items = ds.items.drop_duplicates("item_id").set_index("item_id").reindex(split.item_ids)
        items = items.reset_index().rename(columns={"index": "item_id"})
    else:  # implicit data without an item table: the id is the only text there is
        items = pd.DataFrame({"item_id": split.item_ids, "title": split.item_ids,
                              "year": pd.array([pd.NA] * split.n_items, dtype="Int64"), "genres": ""})
    return ValidatedData(split, items, report.to_dict(), ds.name, quarantine)


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
    from rrec_core.encoder import embed_items

    emb = embed_items(data.items, cfg, root=root, progress=progress)
    if emb.item_ids != data.split.item_ids:
        raise AssertionError("item text embeddings are not aligned with the split's item ids")
    return ItemTextEmbeddings(emb)


def pretrain(data: ValidatedData, text: ItemTextEmbeddings | None, cfg: PretrainConfig, progress: bool = True,
             curves_dir: str | Path | None = "metrics/curves") -> TrainedModels:
    """Train every configured model. The hybrid warm-starts from MF-BPR when both are trained and
    `text_hybrid.warm_start` is set, so it can only keep or improve MF's validation NDCG@10.
    Early stopping looks at validation NDCG@10 only; each model's curve goes to curves_dir/<model>.csv."""
    eval_cfg = EvalConfig(ks=(10,))
    from rrec_core.train import LMTower, build_model, train_recommender, warm_start_from

    out = TrainedModels({}, {}, {})
    for kind in cfg.models:
        tcfg = getattr(cfg, kind)
        feats = text.emb.embeddings if (text is not None and kind == "text_hybrid") else None
        model = build_model(kind, data.split, tcfg, feats)
        warm = kind == "text_hybrid" and tcfg.warm_start and "mf_bpr" in out.models
        if warm:
            warm_start_from(model, out.models["mf_bpr"])
        tower = None
        if kind == "text_hybrid" and tcfg.lm_finetune_layers > 0:
            # the same model, tokenization and pooling that produced the frozen embeddings
            tower = LMTower(text.emb.texts, EncoderConfig(**text.emb.config), tcfg.lm_finetune_layers)
        t0 = time.perf_counter()
        result = train_recommender(model, data.split, tcfg, eval_cfg, lm_tower=tower, progress=progress,
                                   warm_start=warm)
        log.info("%s: best epoch %d, valid ndcg@10 %.4f, %.1fs", kind, result.best_epoch,
                 result.best_valid.get("ndcg@10", float("nan")), time.perf_counter() - t0)
        _record(out, kind, result, tower, curves_dir)
    return out


def adversarial_train(pretrained: TrainedModels, data: ValidatedData, text: ItemTextEmbeddings | None,
                      cfg: AdversarialConfig, progress: bool = True,
                      curves_dir: str | Path | None = "metrics/adversarial_curves",
                      gan: GanSamples | None = None) -> TrainedModels:
    """Adversarially fine-tune each configured pretrained model (warm start; robust model selection).
    With `cfg.gan_weighting`, each user's pairs are weighted by 1 - P(fake) from the detector fitted on
    the GAN's profiles (`gan`, required then)."""
    from rrec_core.adversarial import adversarial_finetune
    from rrec_core.train import LMTower

    weights = None
    if cfg.gan_weighting:
        if gan is None or "detector" not in gan.report:
            raise ValueError("adversarial.gan_weighting needs the gan_samples asset (with its fitted detector)")
        from rrec_core.poisoning.detector import FakeDetector, suspicion_weights

        weights, p_fake = suspicion_weights(FakeDetector.from_dict(gan.report["detector"]), data.split)
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
                                      lm_tower=tower, progress=progress, user_weights=weights)
        _record(out, kind, result, tower, curves_dir)
    return out


def _record(out: TrainedModels, kind: str, result, tower, curves_dir: str | Path | None) -> None:
    """Keep a trained model, its curve and its tuned LM layers; write the curve for `dvc plots`."""
    out.models[kind], out.histories[kind] = result.model, result.history
    if tower is not None:
        out.towers[kind] = tower.state_dict()
    if curves_dir is not None:
        write_curve_csv(result.history, Path(curves_dir) / f"{kind}.csv")


def evaluate_robustness_stage(pretrained: TrainedModels, adversarial: TrainedModels, data: ValidatedData,
                              cfg: RobustnessConfig, eval_cfg: EvalConfig, metrics_dir: str | Path = "metrics",
                              reports_dir: str | Path = "reports", progress: bool = True,
                              poisoning: Evaluation | None = None) -> Evaluation:
    """Attack every pretrained and adversarial model; write metrics/robustness.json, the DVC plot
    table metrics/robustness.csv, and reports/robustness.md with its figure (and the poisoning
    evaluation's section when `poisoning` is given)."""
    from rrec_core.io import write_text
    from rrec_core.robustness import evaluate_robustness, plot_robustness, report_markdown, robustness_frame

    models = {f"pretrained/{k}": m for k, m in pretrained.models.items()}
    models.update({f"adversarial/{k}": m for k, m in adversarial.models.items()})
    result = evaluate_robustness(models, data.split, cfg, eval_cfg, progress=progress)
    metrics_dir, reports_dir = Path(metrics_dir), Path(reports_dir)
    write_json(metrics_dir / "robustness.json", result)
    from rrec_core.io import atomic_path

    with atomic_path(metrics_dir / "robustness.csv") as tmp:
        robustness_frame(result).to_csv(tmp, index=False)
    plot_robustness(result, reports_dir / "robustness.png")
    report = report_markdown(result, image="robustness.png")
    if poisoning is not None and poisoning.metrics.get("attacks"):
        from rrec_core.poisoning.evaluation import poisoning_markdown

        report = report.rstrip("\n") + "\n\n" + poisoning_markdown(poisoning.metrics, image="poisoning.png")
    write_text(reports_dir / "robustness.md", report)
    return Evaluation(result)


def write_curve_csv(history: list[dict], path: Path) -> Path:
    """Per-epoch loss and validation metrics, the file `dvc plots` draws."""
    from rrec_core.io import atomic_path

    cols = ["epoch", "loss", "valid_ndcg@10", "valid_ndcg@10_attacked", "valid_recall@10", "valid_hit@10",
            "valid_mrr@10", "train_seconds"]
    with atomic_path(path) as tmp:
        frame = pd.DataFrame(history)
        frame.reindex(columns=[c for c in cols if c in frame.columns]).to_csv(tmp, index=False, float_format="%.6g")
    return path


def evaluate_pretrained(models: TrainedModels, data: ValidatedData, cfg: EvalConfig,
                        metrics_path: str | Path | None = "metrics/pretrain.json") -> Evaluation:
    """Test metrics (train and valid masked) per model; written to metrics_path for DVC/git."""
    from rrec_core.train import evaluate_model

    out: dict = {}
    for name, model in models.models.items():
        t0 = time.perf_counter()
        test = evaluate_model(model, data.split, "test", cfg)
        valid = evaluate_model(model, data.split, "valid", cfg)
        out[name] = {**{k: round(v, 6) for k, v in test.items()},
                     "valid": {k: round(v, 6) for k, v in valid.items()},
                     "best_epoch": model.meta.get("best_epoch"), "train_seconds": model.meta.get("train_seconds"),
                     "eval_seconds": round(time.perf_counter() - t0, 3)}
    if metrics_path is not None:
        write_json(metrics_path, out)
    return Evaluation(out)


def generate_gan_samples(data: ValidatedData, cfg: GanConfig, screen: ScreenConfig,
                         metrics_path: str | Path | None = "metrics/gan.json") -> GanSamples:
    """Train the GAN on the training interactions, generate round(fake_ratio * users) fake profiles
    pushing `n_targets` unpopular items, and measure their stealth against heuristic fakes: item-
    popularity TV distance, profile length, and the poisoning screen's detection rate on each."""
    from rrec_core.poisoning import detection_metrics, inject_attack, screen_users, stealth_stats
    from rrec_core.poisoning.gan import gan_attack, train_gan

    train = data.split.to_frame().query("part == 'train'")[["user_id", "item_id"]].reset_index(drop=True)
    train["timestamp"] = np.arange(len(train), dtype=np.int64)
    train = train.astype({"user_id": "str", "item_id": "str"})
    result = train_gan(train, cfg)
    gan = gan_attack(train, cfg=cfg, result=result)
    report: dict = {"targets": gan.targets, "n_fake": len(gan.fake_users), "log": result.log,
                    "train_seconds": result.seconds, "attacks": {}}
    for name, poisoned in (("gan", gan), *((a, inject_attack(train, attack=a, targets=gan.targets,
                                                              fake_ratio=cfg.fake_ratio, seed=cfg.seed))
                                          for a in ("random", "bandwagon"))):
        flagged = screen_users(poisoned.interactions, screen).flagged
        report["attacks"][name] = {**stealth_stats(train, poisoned.injected, exclude_items=gan.targets),
                                   **{f"screen_{k}": v for k, v in detection_metrics(flagged, poisoned.fake_users).items()}}
    adv_epochs = [row for row in result.log if "d_acc" in row]  # the log also holds warm-up/calibration rows
    report["final_d_acc"] = adv_epochs[-1]["d_acc"] if adv_epochs else None
    # the fake-profile detector the adversarial fine-tuning weights users with (rrec_core.poisoning.detector)
    from rrec_core.poisoning.detector import train_detector

    report["detector"] = train_detector(train, gan.injected, screen, seed=cfg.seed).to_dict()
    if metrics_path is not None:
        write_json(metrics_path, {k: report[k] for k in ("n_fake", "train_seconds", "attacks", "final_d_acc")})
    return GanSamples(result, gan.injected.reset_index(drop=True), report)


def evaluate_poisoning_stage(raw: RawData, data: ValidatedData, gan: GanSamples | None, cfg: PoisoningEvalConfig,
                             screen: ScreenConfig, pretrain_cfg: TrainConfig, adv_cfg: AdversarialConfig,
                             metrics_dir: str | Path = "metrics", reports_dir: str | Path = "reports",
                             progress: bool = False) -> Evaluation:
    """Inject each configured attack, retrain MF-BPR and its adversarial fine-tuning from scratch per arm
    (clean, undefended, GAN-weighted fine-tuning, screen + GAN weights), measure on real users; write
    metrics/poisoning.json, metrics/poisoning.csv and reports/poisoning.png."""
    from rrec_core.io import atomic_path
    from rrec_core.poisoning.detector import FakeDetector
    from rrec_core.poisoning.evaluation import evaluate_poisoning, plot_poisoning, poisoning_frame

    metrics_dir, reports_dir = Path(metrics_dir), Path(reports_dir)
    if not cfg.enabled:  # the stage's outputs still exist (DVC tracks them), saying so
        result = {"enabled": False, "attacks": {}}
    else:
        if "gan" in cfg.attacks and gan is None:
            raise ValueError("poisoning.attacks names gan, which needs the gan_samples asset")
        detector = (FakeDetector.from_dict(gan.report["detector"])
                    if gan is not None and "detector" in gan.report else None)
        # the rows the validation stage screened: every validated interaction, as loaded (ratings, timestamps)
        inter = raw.dataset.interactions
        result = {"enabled": True, **evaluate_poisoning(inter, data.split, cfg, screen, pretrain_cfg, adv_cfg,
                                                        detector, gan.result if gan is not None else None,
                                                        progress=progress)}
    write_json(metrics_dir / "poisoning.json", result)
    with atomic_path(metrics_dir / "poisoning.csv") as tmp:
        poisoning_frame(result).to_csv(tmp, index=False)
    plot_poisoning(result, reports_dir / "poisoning.png")
    return Evaluation(result)


def metrics_markdown(metrics: dict, keys=("ndcg@10", "recall@10", "hit@10", "mrr@10", "precision@10")) -> str:
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, m in metrics.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4f}" for k in keys) + " |")
    return "\n".join(lines)


def training_curve_png(histories: dict[str, list[dict]], path: str | Path) -> Path:
    """Validation NDCG@10 and training loss per epoch, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rrec_core.io import atomic_path

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, hist in histories.items():
        ep = [h["epoch"] for h in hist if "valid_ndcg@10" in h]
        a.plot(ep, [h["valid_ndcg@10"] for h in hist if "valid_ndcg@10" in h], label=name)
        b.plot([h["epoch"] for h in hist if h["epoch"] > 0], [h["loss"] for h in hist if h["epoch"] > 0], label=name)
    a.set(xlabel="epoch", ylabel="valid NDCG@10")
    b.set(xlabel="epoch", ylabel="BPR loss")
    a.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return Path(path)
