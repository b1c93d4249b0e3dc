"""The asset graph. Each asset unpacks its inputs, calls one rrec_core.pipeline function, attaches
the metadata a user wants to see, and returns the artefact (persisted by ArtifactIOManager)."""
import base64
import tempfile
from pathlib import Path

import pandas as pd

from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, MetadataValue,
                     Output, asset)

from orchestration.config import (AdversarialLaunch, DataLaunch, EncoderLaunch, EvalLaunch, GanLaunch,
                                  PoisoningLaunch, PretrainLaunch, RobustnessLaunch, ValidateLaunch, to_core)
from rrec_core import pipeline
from rrec_core.artifacts import Evaluation, GanSamples, ItemTextEmbeddings, RawData, TrainedModels, ValidatedData
from rrec_core.config import (AdversarialConfig, DataConfig, EncoderConfig, EvalConfig, GanConfig,
                              PoisoningEvalConfig, PretrainConfig, RobustnessConfig, SplitConfig, ValidationConfig)
from orchestration.config import project_params

GROUP = "rrec"


@asset(group_name=GROUP, description="Interactions and items read from data/ into rrec's frame contract.")
def raw_interactions(context: AssetExecutionContext, config: DataLaunch) -> Output[RawData]:
    raw = pipeline.load_raw_data(to_core(config, DataConfig))
    ds = raw.dataset
    return Output(raw, metadata={
        "dagster/row_count": len(ds.interactions),
        "n_users": ds.n_users, "n_items": ds.n_items,
        "n_catalog_items": 0 if ds.items is None else len(ds.items),
        "source": ds.interactions.attrs.get("source", ""),
        "schema": MetadataValue.md(_schema_md(ds.interactions, ds.items)),
        "preview": MetadataValue.md(ds.interactions.head(10).to_markdown()),
    })


VALIDATION_CHECK = "expectation_suite"
SCREEN_CHECK = "poisoning_screen"


@asset(group_name=GROUP, check_specs=[
    AssetCheckSpec(VALIDATION_CHECK, asset="validated_interactions", blocking=True,
                   description="Great Expectations suite over interactions and items"),
    AssetCheckSpec(SCREEN_CHECK, asset="validated_interactions",
                   description="Shilling screen: suspect users are quarantined (listed, excluded from training)")],
       description="Interactions that pass the expectation suite, split into train/valid/test.")
def validated_interactions(context: AssetExecutionContext, config: ValidateLaunch, raw_interactions: RawData):
    vcfg, scfg = to_core(config.validation, ValidationConfig), to_core(config.split, SplitConfig)
    report = pipeline.validate_raw_data(raw_interactions, vcfg)
    failures = [f.describe() for f in report.failures]
    yield AssetCheckResult(check_name=VALIDATION_CHECK, passed=report.success, severity=AssetCheckSeverity.ERROR,
                           metadata={"expectations": MetadataValue.md(report.markdown()),
                                     "failures": MetadataValue.json([f.__dict__ for f in report.failures][:20]),
                                     "failed": len(report.failures),
                                     "evaluated": report.statistics.get("evaluated_expectations", 0)})
    # raises DataValidationError naming file/row/column: nothing is written and downstream never runs
    data = pipeline.validate_and_split(raw_interactions, vcfg, scfg, report=report)
    q = data.quarantine
    yield AssetCheckResult(check_name=SCREEN_CHECK, passed=len(q) == 0, severity=AssetCheckSeverity.WARN,
                           metadata={"quarantined_users": len(q), "enabled": vcfg.screen.enabled,
                                     "top_suspects": MetadataValue.md(q.head(20).to_markdown(index=False)
                                                                      if len(q) else "none")})
    sp = data.split
    context.log.info("validation passed; split %d/%d/%d", len(sp.train), len(sp.valid), len(sp.test))
    yield Output(data, metadata={
        "n_users": sp.n_users, "n_items": sp.n_items, "n_train": len(sp.train), "n_valid": len(sp.valid),
        "n_test": len(sp.test), "split": f"{scfg.strategy} {list(scfg.ratios) if scfg.strategy == 'ratio' else ''}",
        "density": sp.n_users and (len(sp.train) + len(sp.valid) + len(sp.test)) / (sp.n_users * sp.n_items),
        "failures": "\n".join(failures) or "none",
    })


@asset(group_name=GROUP, description="Item text encoded by a pretrained language model (mean pooling).")
def item_text_embeddings(context: AssetExecutionContext, config: EncoderLaunch,
                         validated_interactions: ValidatedData) -> Output[ItemTextEmbeddings]:
    cfg = to_core(config, EncoderConfig)
    out = pipeline.embed_item_text(validated_interactions, cfg)
    e = out.emb.embeddings
    return Output(out, metadata={"model": cfg.model, "shape": str(list(e.shape)), "from_cache": out.emb.from_cache,
                                 "cache_key": out.emb.cache_key,
                                 "example_texts": MetadataValue.md("\n".join(f"- {t}" for t in out.emb.texts[:5]))})


@asset(group_name=GROUP, description="MF-BPR and the text-aware hybrid, trained with early stopping on valid NDCG@10.")
def pretrained_recommender(context: AssetExecutionContext, config: PretrainLaunch,
                           validated_interactions: ValidatedData,
                           item_text_embeddings: ItemTextEmbeddings) -> Output[TrainedModels]:
    cfg = to_core(config, PretrainConfig)
    params = project_params()
    trained = pipeline.pretrain(validated_interactions, item_text_embeddings, cfg, progress=False,
                                curves_dir=Path(params.metrics_dir) / "curves")
    meta = {}
    for name, m in trained.models.items():
        meta[f"{name}/best_epoch"] = m.meta["best_epoch"]
        meta[f"{name}/train_seconds"] = round(m.meta["train_seconds"], 1)
        hist = trained.histories[name]
        best = [h for h in hist if h["epoch"] == m.meta["best_epoch"]]
        if best:
            meta[f"{name}/valid_ndcg@10"] = round(best[0]["valid_ndcg@10"], 4)
    meta["training_curve"] = _png_md(lambda p: pipeline.training_curve_png(trained.histories, p))
    return Output(trained, metadata=meta)


@asset(group_name=GROUP, description="Adversarially fine-tuned recommenders (APR / PGD-AT, text-side FGM), "
                                     "warm-started from pretrained_recommender; users weighted by 1 - P(fake) from "
                                     "a detector fitted on gan_samples.")
def adversarial_recommender(context: AssetExecutionContext, config: AdversarialLaunch,
                            pretrained_recommender: TrainedModels, validated_interactions: ValidatedData,
                            item_text_embeddings: ItemTextEmbeddings, gan_samples: GanSamples) -> Output[TrainedModels]:
    cfg = to_core(config, AdversarialConfig)
    # its own curves folder: a DVC output belongs to one stage (metrics/curves is pretraining's)
    trained = pipeline.adversarial_train(pretrained_recommender, validated_interactions, item_text_embeddings, cfg,
                                         progress=False,
                                         curves_dir=Path(project_params().metrics_dir) / "adversarial_curves",
                                         gan=gan_samples)
    meta = {"method": cfg.method, "eps": f"{cfg.eps} ({cfg.scale}, {cfg.norm})"}
    for name, m in trained.models.items():
        best = [h for h in trained.histories[name] if h["epoch"] == m.meta["best_epoch"]][0]
        meta[f"{name}/best_epoch"] = m.meta["best_epoch"]
        meta[f"{name}/train_seconds"] = round(m.meta["train_seconds"], 1)
        meta[f"{name}/valid_ndcg@10"] = round(best["valid_ndcg@10"], 4)
        meta[f"{name}/valid_ndcg@10_attacked"] = round(best["valid_ndcg@10_attacked"], 4)
    meta["training_curve"] = _png_md(lambda p: pipeline.training_curve_png(trained.histories, p))
    return Output(trained, metadata=meta)


@asset(group_name=GROUP, description="Pretrained and adversarial models side by side under embedding attacks.")
def robustness_evaluation(context: AssetExecutionContext, config: RobustnessLaunch,
                          pretrained_recommender: TrainedModels, adversarial_recommender: TrainedModels,
                          validated_interactions: ValidatedData, poisoning_evaluation: Evaluation) -> Output[Evaluation]:
    params = project_params()
    ev = pipeline.evaluate_robustness_stage(pretrained_recommender, adversarial_recommender, validated_interactions,
                                            to_core(config, RobustnessConfig), params.evaluation,
                                            metrics_dir=params.metrics_dir, reports_dir="reports", progress=False,
                                            poisoning=poisoning_evaluation)
    from rrec_core.robustness import headline

    table = headline(ev.metrics)
    return Output(ev, metadata={
        "headline": MetadataValue.md(table.to_markdown(floatfmt=".4f")),
        "ndcg_vs_eps": _png_md(lambda p: Path(p).write_bytes(Path("reports/robustness.png").read_bytes()) and p),
        "report": str(Path("reports/robustness.md").resolve()),
        "n_attacks": len(ev.metrics["grid"]),
    })


@asset(group_name=GROUP, description="Data poisoning: each attack injected, MF-BPR and its adversarial fine-tuning "
                                     "retrained from scratch undefended / GAN-weighted / screened; target promotion "
                                     "and clean NDCG@10 on real users.")
def poisoning_evaluation(context: AssetExecutionContext, config: PoisoningLaunch, raw_interactions: RawData,
                         validated_interactions: ValidatedData, gan_samples: GanSamples) -> Output[Evaluation]:
    params = project_params()
    ev = pipeline.evaluate_poisoning_stage(raw_interactions, validated_interactions, gan_samples,
                                           to_core(config, PoisoningEvalConfig), params.validation.screen,
                                           params.pretrain.mf_bpr, params.adversarial,
                                           metrics_dir=params.metrics_dir, reports_dir="reports")
    r = ev.metrics
    if not r.get("enabled"):
        return Output(ev, metadata={"enabled": False})
    from rrec_core.poisoning.evaluation import poisoning_frame

    meta = {"targets": ", ".join(r["targets"]), "seconds": r["seconds"],
            "table": MetadataValue.md(poisoning_frame(r).to_markdown(index=False, floatfmt=".4f")),
            "target_hr": _png_md(lambda p: Path(p).write_bytes(Path("reports/poisoning.png").read_bytes()) and p)}
    for attack, res in r["attacks"].items():
        meta[f"{attack}/screen_recall"] = res["screen"]["recall"]
        for arm in ("undefended", "defended"):
            meta[f"{attack}/{arm}/adversarial_promotion@10"] = round(res[arm]["adversarial"]["promotion@10"], 4)
    return Output(ev, metadata=meta)


@asset(group_name=GROUP, description="Test metrics of every pretrained model (full ranking, history masked).")
def pretrain_evaluation(context: AssetExecutionContext, config: EvalLaunch, pretrained_recommender: TrainedModels,
                        validated_interactions: ValidatedData) -> Output[Evaluation]:
    ev = pipeline.evaluate_pretrained(pretrained_recommender, validated_interactions, to_core(config, EvalConfig),
                                      metrics_path=Path(project_params().metrics_dir) / "pretrain.json")
    meta = {"metrics": MetadataValue.md(pipeline.metrics_markdown(ev.metrics))}
    for name, m in ev.metrics.items():
        meta[f"{name}/ndcg@10"] = m["ndcg@10"]
    return Output(ev, metadata=meta)


@asset(group_name=GROUP, description="Fake user profiles from a WGAN-GP generator conditioned on real profiles "
                                     "(the trained generator is saved), with stealth statistics.")
def gan_samples(context: AssetExecutionContext, config: GanLaunch,
                validated_interactions: ValidatedData) -> Output[GanSamples]:
    params = project_params()
    out = pipeline.generate_gan_samples(validated_interactions, to_core(config, GanConfig), params.validation.screen,
                                        metrics_path=Path(params.metrics_dir) / "gan.json")
    rep = out.report
    log = pd.DataFrame(rep["log"])
    stealth = pd.DataFrame(rep["attacks"]).T
    return Output(out, metadata={
        "n_fake": rep["n_fake"], "targets": ", ".join(rep["targets"]), "train_seconds": round(rep["train_seconds"], 1),
        "training_log": MetadataValue.md(log.to_markdown(index=False, floatfmt=".4f")),
        "stealth_and_detection": MetadataValue.md(stealth.to_markdown(floatfmt=".3f")),
        "gan_screen_recall": float(rep["attacks"]["gan"]["screen_recall"]),
        # the detector adversarial fine-tuning weights users with (1 - P(fake))
        "detector_train_accuracy": float(rep["detector"]["fit"]["train_accuracy"]),
        "detector_coefficients": MetadataValue.json(dict(zip(rep["detector"]["columns"], rep["detector"]["coef"]))),
    })


def _schema_md(inter, items) -> str:
    rows = ["| table | column | dtype |", "|---|---|---|"]
    for t, df in (("interactions", inter), ("items", items)):
        if df is not None:
            rows += [f"| {t} | {c} | {df[c].dtype} |" for c in df.columns]
    return "\n".join(rows)


def _png_md(draw) -> MetadataValue:
    """A plot inlined as a data-URI Markdown image (shown in the asset's metadata in the UI)."""
    with tempfile.TemporaryDirectory() as d:
        p = draw(Path(d) / "plot.png")
        b64 = base64.b64encode(Path(p).read_bytes()).decode()
    return MetadataValue.md(f"![plot](data:image/png;base64,{b64})")


ASSETS = [raw_interactions, validated_interactions, item_text_embeddings, pretrained_recommender, pretrain_evaluation,
          gan_samples, adversarial_recommender, poisoning_evaluation, robustness_evaluation]
