"""The asset graph. Each asset reads its config sections from the run's one resolved configuration
(the `rrec_config` resource), calls one rrec_core.pipeline function, attaches the metadata a user
wants to see, and returns the artefact (saved, with its published files, by ArtifactIOManager)."""
import base64
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MetadataValue,
    Output,
    asset,
)

from orchestration.resources import RrecConfig
from rrec_core import pipeline
from rrec_core.artifacts import (
    ColdStartEvaluation,
    DistillationEvaluation,
    GanSamples,
    ItemTextEmbeddings,
    PoisoningEvaluation,
    PretrainEvaluation,
    RawData,
    Recommendations,
    RobustnessEvaluation,
    TextAttackEvaluation,
    TrainedModels,
    ValidatedData,
)

GROUP = "rrec"
VALIDATION_CHECK = "expectation_suite"
SCREEN_CHECK = "poisoning_screen"
TEXT_CHECK = "item_text_sanitizer"
GATE_CHECK = "quality_gate"


@asset(group_name=GROUP, description="Interactions and items read from data/ into rrec's frame contract.")
def raw_interactions(context: AssetExecutionContext, rrec_config: RrecConfig) -> Output[RawData]:
    raw = pipeline.load_raw_data(rrec_config.resolve().data)
    ds = raw.dataset
    return Output(raw, metadata={
        "dagster/row_count": len(ds.interactions),
        "n_users": ds.n_users, "n_items": ds.n_items,
        "n_catalog_items": 0 if ds.items is None else len(ds.items),
        "source": ds.interactions.attrs.get("source", ""),
        "schema": MetadataValue.md(_schema_md(ds.interactions, ds.items)),
        "preview": MetadataValue.md(ds.interactions.head(10).to_markdown()),
    })


@asset(group_name=GROUP, check_specs=[
    AssetCheckSpec(VALIDATION_CHECK, asset="validated_interactions", blocking=True,
                   description="Great Expectations suite over interactions and items"),
    AssetCheckSpec(SCREEN_CHECK, asset="validated_interactions",
                   description="Shilling screen: suspect users are quarantined (listed, excluded from training)"),
    AssetCheckSpec(TEXT_CHECK, asset="validated_interactions",
                   description="Item text sanitizer: look-alike letters, invisible characters and compatibility "
                               "forms undone in title and genres; every changed cell listed")],
       description="Interactions that pass the expectation suite, split into train/valid/test.")
def validated_interactions(context: AssetExecutionContext, rrec_config: RrecConfig, raw_interactions: RawData):
    cfg = rrec_config.resolve()
    report = pipeline.validate_raw_data(raw_interactions, cfg.validation)
    failures = [f.describe() for f in report.failures]
    yield AssetCheckResult(check_name=VALIDATION_CHECK, passed=report.success, severity=AssetCheckSeverity.ERROR,
                           metadata={"expectations": MetadataValue.md(report.markdown()),
                                     "failures": MetadataValue.json([f.__dict__ for f in report.failures][:20]),
                                     "failed": len(report.failures),
                                     "evaluated": report.statistics.get("evaluated_expectations", 0)})
    # raises DataValidationError naming file/row/column: nothing is written and downstream never runs
    data = pipeline.validate_and_split(raw_interactions, cfg.validation, cfg.split, report=report)
    q = data.quarantine
    yield AssetCheckResult(check_name=SCREEN_CHECK, passed=len(q) == 0, severity=AssetCheckSeverity.WARN,
                           metadata={"quarantined_users": len(q), "enabled": cfg.validation.screen.enabled,
                                     "top_suspects": MetadataValue.md(q.head(20).to_markdown(index=False)
                                                                      if len(q) else "none")})
    t = data.text_changes
    yield AssetCheckResult(check_name=TEXT_CHECK, passed=len(t) == 0, severity=AssetCheckSeverity.WARN,
                           metadata={"changed_cells": len(t), "enabled": cfg.validation.sanitize_text,
                                     "source": str(raw_interactions.dataset.items.attrs.get("source", ""))
                                     if raw_interactions.dataset.items is not None else "",
                                     "changes": MetadataValue.md(t.head(20).to_markdown(index=False)
                                                                 if len(t) else "none")})
    sp = data.split
    context.log.info("validation passed; split %d/%d/%d", len(sp.train), len(sp.valid), len(sp.test))
    yield Output(data, metadata={
        "n_users": sp.n_users, "n_items": sp.n_items, "n_train": len(sp.train), "n_valid": len(sp.valid),
        "n_test": len(sp.test),
        "split": f"{cfg.split.strategy} {list(cfg.split.ratios) if cfg.split.strategy == 'ratio' else ''}",
        "density": sp.n_users and (len(sp.train) + len(sp.valid) + len(sp.test)) / (sp.n_users * sp.n_items),
        "failures": "\n".join(failures) or "none",
    })


@asset(group_name=GROUP, description="Item text encoded by a pretrained language model (mean pooling).")
def item_text_embeddings(context: AssetExecutionContext, rrec_config: RrecConfig,
                         validated_interactions: ValidatedData) -> Output[ItemTextEmbeddings]:
    cfg = rrec_config.resolve().encoder
    out = pipeline.embed_item_text(validated_interactions, cfg)
    e = out.emb.embeddings
    return Output(out, metadata={"model": cfg.model, "shape": str(list(e.shape)), "from_cache": out.emb.from_cache,
                                 "cache_key": out.emb.cache_key,
                                 "example_texts": MetadataValue.md("\n".join(f"- {t}" for t in out.emb.texts[:5]))})


def _gate_spec(asset_name: str) -> AssetCheckSpec:
    return AssetCheckSpec(GATE_CHECK, asset=asset_name, blocking=True,
                          description="Quality gate: validation NDCG@10 (and, for adversarial models, the validation "
                                      "worst case) above the floors of params.yaml `gates` and not below the previous "
                                      "materialization's beyond the tolerance; a failure keeps the previous model "
                                      "and blocks everything downstream.")


def _quality_gate(context: AssetExecutionContext, trained: TrainedModels, cfg, remeasure=None):
    """The gate's check result, then (failed) QualityGateError before the output: the artefact on disk stays the
    previous one. Previous numbers: those of that artefact on disk (what a failed gate keeps; after `dvc
    checkout` or `git checkout` it is not the last run's), else the last materialization's `gate_numbers`.
    `remeasure(path)`: a measure of the models saved at `path` under the new selection attack, for worst cases
    the previous model's own attack measured (rrec_core.gates.remeasure_previous)."""
    from rrec_core.gates import check_gate, gate_numbers, gate_numbers_of_artefact, remeasure_previous
    from rrec_core.outputs import ARTIFACTS_DIR

    numbers = gate_numbers(trained.histories, {n: m.meta["best_epoch"] for n, m in trained.models.items()},
                           {n: m.meta for n, m in trained.models.items()})
    on_disk = Path(ARTIFACTS_DIR) / context.asset_key.to_user_string()
    previous = gate_numbers_of_artefact(on_disk)
    if previous is not None and remeasure is not None:
        previous = remeasure_previous(numbers, previous, remeasure(on_disk))
    source = f"the artefact on disk ({on_disk})"
    last = context.instance.get_latest_materialization_event(context.asset_key)
    if previous is None:
        source = "none"
        if last is not None and last.asset_materialization is not None:
            value = last.asset_materialization.metadata.get("gate_numbers")
            value = getattr(value, "value", None) if value is not None else None
            if isinstance(value, dict):
                previous, source = value, f"the last materialization (run {last.run_id})"
    gate = check_gate(numbers, previous, cfg)
    passed = gate.passed or not cfg.enabled
    check = AssetCheckResult(check_name=GATE_CHECK, passed=passed, severity=AssetCheckSeverity.ERROR,
                             metadata={"gate": MetadataValue.md(gate.markdown()), "enabled": cfg.enabled,
                                       "previous": source, "failures": "; ".join(gate.failures()) or "none"})
    return numbers, gate, check, passed


@asset(group_name=GROUP, check_specs=[_gate_spec("pretrained_recommender")],
       description="MF-BPR and the text-aware hybrid, trained with early stopping on valid NDCG@10.")
def pretrained_recommender(context: AssetExecutionContext, rrec_config: RrecConfig,
                           validated_interactions: ValidatedData, item_text_embeddings: ItemTextEmbeddings):
    cfg = rrec_config.resolve()
    trained = pipeline.pretrain(validated_interactions, item_text_embeddings, cfg.pretrain, progress=False)
    numbers, gate, check, passed = _quality_gate(context, trained, cfg.gates)
    yield check
    if not passed:
        gate.raise_for_failures()
    yield Output(trained, metadata={**_training_metadata(trained), "gate_numbers": MetadataValue.json(numbers)})


@asset(group_name=GROUP, description="Test metrics of every pretrained model (full ranking, history masked).")
def pretrain_evaluation(context: AssetExecutionContext, rrec_config: RrecConfig,
                        pretrained_recommender: TrainedModels,
                        validated_interactions: ValidatedData) -> Output[PretrainEvaluation]:
    from rrec_core.reporting.training import metrics_markdown

    ev = pipeline.evaluate_pretrained(pretrained_recommender, validated_interactions, rrec_config.resolve().evaluation)
    meta = {"metrics": MetadataValue.md(metrics_markdown(ev.result)), **_seconds(ev.timings)}
    for name, m in ev.result.models.items():
        meta[f"{name}/ndcg@10"] = m.test["ndcg@10"]
    return Output(ev, metadata=meta)


@asset(group_name=GROUP, description="Item cold start: a share of the items loses every training interaction; "
                                     "MF-BPR, the text hybrid with and without the cold-start treatment (and with "
                                     "the new-item guard), random, "
                                     "popularity and text-kNN rank all items; metrics on all, warm and cold test pairs.")
def cold_start_evaluation(context: AssetExecutionContext, rrec_config: RrecConfig,
                          validated_interactions: ValidatedData,
                          item_text_embeddings: ItemTextEmbeddings) -> Output[ColdStartEvaluation]:
    cfg = rrec_config.resolve()
    ev = pipeline.evaluate_cold_start_stage(validated_interactions, item_text_embeddings, cfg.cold_start,
                                            cfg.pretrain, cfg.evaluation, guard=cfg.new_item_guard)
    r = ev.result
    if not r.enabled:
        return Output(ev, metadata={"enabled": False})
    rows = {name: {f"{part}/{k}": getattr(m, part)[k] for part in ("all", "warm", "cold")
                   for k in ("ndcg@10", "recall@20")} for name, m in r.models.items()}
    meta = {"n_cold_test_items": r.n_cold_test, "n_cold_test_pairs": r.n_cold_test_pairs,
            "metrics": MetadataValue.md(pd.DataFrame(rows).T.to_markdown(floatfmt=".4f")), **_seconds(ev.timings)}
    for name, m in r.models.items():
        meta[f"{name}/cold_ndcg@10"] = m.cold["ndcg@10"]
    return Output(ev, metadata=meta)


@asset(group_name=GROUP, description="Knowledge distillation: the pretrained text hybrid teaches a student whose "
                                     "encoder keeps only the LM's first layers (ranking KD over the teacher's top-k "
                                     "+ BPR); quality kept beside item-encoding and scoring time, with a no-KD "
                                     "control and the ID-only MF-BPR.")
def distillation(context: AssetExecutionContext, rrec_config: RrecConfig, pretrained_recommender: TrainedModels,
                 validated_interactions: ValidatedData,
                 item_text_embeddings: ItemTextEmbeddings) -> Output[DistillationEvaluation]:
    cfg = rrec_config.resolve()
    ev = pipeline.distill_stage(pretrained_recommender, validated_interactions, item_text_embeddings,
                                cfg.distillation, cfg.evaluation)
    r = ev.result
    if not r.enabled:
        return Output(ev, metadata={"enabled": False})
    t = ev.timings
    rows = {name: {"ndcg@10": m.test["ndcg@10"], "recall@20": m.test.get("recall@20", float("nan")),
                   "ndcg_retained": m.ndcg_retained,
                   "encoder_layers": "no LM" if m.encoder_layers is None else m.encoder_layers,
                   "score_seconds": t.get(f"{name}/score", float("nan"))} for name, m in r.models.items()}
    meta = {"teacher_layers": r.teacher_layers, "student_layers": r.student_layers,
            "metrics": MetadataValue.md(pd.DataFrame(rows).T.to_markdown(floatfmt=".4f")),
            "student/ndcg_retained": r.models["student"].ndcg_retained,
            "encode_speedup": round(t["teacher/encode"] / t["student/encode"], 2), **_seconds(t)}
    return Output(ev, metadata=meta)


@asset(group_name=GROUP, description="Fake user profiles from a WGAN-GP generator conditioned on real profiles "
                                     "(the trained generator is saved), with stealth statistics.")
def gan_samples(context: AssetExecutionContext, rrec_config: RrecConfig,
                validated_interactions: ValidatedData) -> Output[GanSamples]:
    cfg = rrec_config.resolve()
    out = pipeline.generate_gan_samples(validated_interactions, cfg.gan, cfg.validation.screen)
    rep = out.report
    return Output(out, metadata={
        "n_fake": rep.n_fake, "targets": ", ".join(rep.targets), **_seconds(out.timings),
        "training_log": MetadataValue.md(pd.DataFrame(rep.log).to_markdown(index=False, floatfmt=".4f")),
        "stealth_and_detection": MetadataValue.md(pd.DataFrame(rep.attacks).T.to_markdown(floatfmt=".3f")),
        "gan_screen_recall": float(rep.attacks["gan"]["screen_recall"]),
        # the detector adversarial fine-tuning weights users with (1 - P(fake))
        "detector_train_accuracy": float(rep.detector["fit"]["train_accuracy"]),
        "detector_coefficients": MetadataValue.json(dict(zip(rep.detector["columns"], rep.detector["coef"]))),
    })


@asset(group_name=GROUP, check_specs=[_gate_spec("adversarial_recommender")],
       description="Adversarially fine-tuned recommenders (APR / PGD-AT, text-side FGM), "
                                     "warm-started from pretrained_recommender; users weighted by 1 - P(fake) from "
                                     "a detector fitted on gan_samples.")
def adversarial_recommender(context: AssetExecutionContext, rrec_config: RrecConfig,
                            pretrained_recommender: TrainedModels, validated_interactions: ValidatedData,
                            item_text_embeddings: ItemTextEmbeddings, gan_samples: GanSamples):
    full = rrec_config.resolve()
    cfg = full.adversarial
    trained = pipeline.adversarial_train(pretrained_recommender, validated_interactions, item_text_embeddings, cfg,
                                         progress=False, gan=gan_samples)
    numbers, gate, check, passed = _quality_gate(
        context, trained, full.gates, remeasure=lambda path: pipeline.previous_worst_case(path, validated_interactions, cfg))
    yield check
    if not passed:
        gate.raise_for_failures()
    meta = {"method": cfg.method, "eps": f"{cfg.eps} ({cfg.scale}, {cfg.norm})", **_training_metadata(trained),
            "gate_numbers": MetadataValue.json(numbers)}
    for name, m in trained.models.items():
        best = [h for h in trained.histories[name] if h["epoch"] == m.meta["best_epoch"]][0]
        meta[f"{name}/valid_ndcg@10_attacked"] = round(best["valid_ndcg@10_attacked"], 4)
    yield Output(trained, metadata=meta)


@asset(group_name=GROUP, description="Data poisoning: each attack injected, MF-BPR and its adversarial fine-tuning "
                                     "retrained from scratch undefended / GAN-weighted / screened; target promotion "
                                     "and clean NDCG@10 on real users.")
def poisoning_evaluation(context: AssetExecutionContext, rrec_config: RrecConfig, raw_interactions: RawData,
                         validated_interactions: ValidatedData, gan_samples: GanSamples) -> Output[PoisoningEvaluation]:
    from rrec_core.reporting.poisoning import poisoning_frame

    cfg = rrec_config.resolve()
    ev = pipeline.evaluate_poisoning_stage(raw_interactions, validated_interactions, gan_samples, cfg.poisoning,
                                           cfg.validation.screen, cfg.pretrain.mf_bpr, cfg.adversarial)
    r = ev.result
    if not r.enabled:
        return Output(ev, metadata={"enabled": False})
    meta = {"targets": ", ".join(r.targets), **_seconds(ev.timings),
            "table": MetadataValue.md(poisoning_frame(r).to_markdown(index=False, floatfmt=".4f")),
            "target_hr": _png_md(ev.figure_png)}
    for attack, res in r.attacks.items():
        meta[f"{attack}/screen_recall"] = res.screen.recall
        if res.stealth:
            meta[f"{attack}/stealth_auc"] = round(res.stealth["stealth_auc"], 3)
        for arm, pair in res.arms.items():
            meta[f"{attack}/{arm}/adversarial_hr@50"] = round(pair.adversarial["target_hit@50"] or 0.0, 4)
    return Output(ev, metadata=meta)


@asset(group_name=GROUP, description="Pretrained and adversarial models side by side under embedding attacks; "
                                     "the report (reports/robustness.md) also carries the poisoning and text "
                                     "tampering sections.")
def robustness_evaluation(context: AssetExecutionContext, rrec_config: RrecConfig,
                          pretrained_recommender: TrainedModels, adversarial_recommender: TrainedModels,
                          validated_interactions: ValidatedData,
                          poisoning_evaluation: PoisoningEvaluation,
                          text_attack_evaluation: TextAttackEvaluation) -> Output[RobustnessEvaluation]:
    from rrec_core.outputs import REPORT
    from rrec_core.reporting.robustness import headline

    cfg = rrec_config.resolve()
    ev = pipeline.evaluate_robustness_stage(pretrained_recommender, adversarial_recommender, validated_interactions,
                                            cfg.robustness, cfg.evaluation, progress=False,
                                            poisoning=poisoning_evaluation, text_attacks=text_attack_evaluation)
    return Output(ev, metadata={
        "headline": MetadataValue.md(headline(ev.result).to_markdown(floatfmt=".4f")),
        "ndcg_vs_eps": _png_md(ev.figure_png), "report": REPORT, "n_attacks": len(ev.result.grid),
        **_seconds(ev.timings),
    })


@asset(group_name=GROUP, description="Top-k new items per user (everything the user interacted with masked) from "
                                     "the model named by recommendations.model; Parquet with ids, titles, scores.")
def recommendations(context: AssetExecutionContext, rrec_config: RrecConfig, pretrained_recommender: TrainedModels,
                    adversarial_recommender: TrainedModels,
                    validated_interactions: ValidatedData) -> Output[Recommendations]:
    cfg = rrec_config.resolve().recommendations
    rec = pipeline.recommend_stage(pretrained_recommender, adversarial_recommender, validated_interactions, cfg)
    top = rec.top_k
    return Output(rec, metadata={
        "model": rec.model, "k": rec.k, "n_users": int(top["user_id"].nunique()), "n_rows": len(top),
        "distinct_items": int(top["item_id"].nunique()),
        "preview": MetadataValue.md(top.head(2 * rec.k).to_markdown(index=False, floatfmt=".3f")),
    })


@asset(group_name=GROUP, description="Text tampering: each target's title attacked (look-alike/invisible characters "
                                     "and typos, encoder-space word substitution, popular-item imitation) against "
                                     "the pretrained and adversarial text hybrids, warm and cold targets, MF-BPR "
                                     "as the text-blind control, cold targets also through the new-item guard; clean, "
                                     "attacked and sanitized exposure@50.")
def text_attack_evaluation(context: AssetExecutionContext, rrec_config: RrecConfig,
                           pretrained_recommender: TrainedModels, adversarial_recommender: TrainedModels,
                           validated_interactions: ValidatedData,
                           item_text_embeddings: ItemTextEmbeddings) -> Output[TextAttackEvaluation]:
    cfg = rrec_config.resolve()
    ev = pipeline.evaluate_text_attack_stage(pretrained_recommender, adversarial_recommender, validated_interactions,
                                             item_text_embeddings, cfg.text_attacks, cfg.new_item_guard)
    r = ev.result
    if not r.enabled:
        return Output(ev, metadata={"enabled": False})
    rows = {f"{name} / {kind}": {"clean HR@50": m.clean.hr50, "attacked HR@50": a.undefended.hr50,
                                 "sanitized HR@50": a.sanitized.hr50, "test NDCG@10": a.test_ndcg10,
                                 "survives sanitizer": a.survives_sanitizer}
            for name, m in r.models.items() for kind, a in m.attacks.items()}
    from rrec_core.reporting.text_attacks import guard_shares

    meta = {"n_targets": len(r.targets), "mean_audience": r.mean_audience,
            "results": MetadataValue.md(pd.DataFrame(rows).T.to_markdown(floatfmt=".4f")),
            "figure": _png_md(ev.figure_png), **_seconds(ev.timings)}
    for kind, shares in guard_shares(r).items():  # promotion the new-item guard leaves of the unguarded one
        for defence, share in shares.items():
            if share is not None:
                meta[f"{kind}/promotion_kept_by_{defence.replace('+', '_and_')}"] = share
    return Output(ev, metadata=meta)


def _training_metadata(trained: TrainedModels) -> dict:
    meta: dict = {}
    for name, m in trained.models.items():
        meta[f"{name}/best_epoch"] = m.meta["best_epoch"]
        meta[f"{name}/train_seconds"] = round(m.meta["train_seconds"], 1)
        best = [h for h in trained.histories[name] if h["epoch"] == m.meta["best_epoch"]]
        if best and "valid_ndcg@10" in best[0]:
            meta[f"{name}/valid_ndcg@10"] = round(best[0]["valid_ndcg@10"], 4)
    meta["training_curve"] = _png_md(trained.curve_png)
    return meta


def _seconds(timings: dict[str, float]) -> dict:
    """Timings belong in run metadata, not in the tracked metrics files."""
    return {f"seconds/{k}": float(v) for k, v in timings.items()}


def _schema_md(inter, items) -> str:
    rows = ["| table | column | dtype |", "|---|---|---|"]
    for t, df in (("interactions", inter), ("items", items)):
        if df is not None:
            rows += [f"| {t} | {c} | {df[c].dtype} |" for c in df.columns]
    return "\n".join(rows)


def _png_md(png: bytes) -> MetadataValue:
    """A plot inlined as a data-URI Markdown image (shown in the asset's metadata in the UI)."""
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(png).decode()})")


ASSETS = [raw_interactions, validated_interactions, item_text_embeddings, pretrained_recommender, pretrain_evaluation,
          cold_start_evaluation, distillation, gan_samples, adversarial_recommender, poisoning_evaluation,
          robustness_evaluation, recommendations, text_attack_evaluation]
