"""The whole Dagster chain, materialized in-process on a tiny generated dataset and a tiny BERT."""
import json
from pathlib import Path

import pytest
import yaml
from conftest import write_tiny_atomic
from dagster import materialize

from rrec_core import load_recommender

TINY_LOOP = {"lr": 0.01, "batch_size": 128, "epochs": 4, "patience": 3, "device": "cpu"}
TINY_TRAIN = {"embedding_dim": 8, **TINY_LOOP}


def tiny_params(data_path: str, bert: Path) -> dict:
    """The project's params.yaml with the data, model and training shrunk to seconds."""
    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["path"] = data_path
    params["encoder"].update({"model": str(bert), "device": "cpu", "batch_size": 16})
    params["pretrain"]["mf_bpr"].update(TINY_TRAIN)
    # pretraining tunes the layer from summed feature gradients; fine-tuning runs it end to end (text FGM)
    params["pretrain"]["text_hybrid"].update({**TINY_TRAIN, "lm_finetune_layers": 1, "lm_lr": 1e-4,
                                              "lm_update_every": 2})
    params["evaluation"]["ks"] = [5, 10]
    params["distillation"].update({"timing_repeats": 1, "train": {**params["distillation"]["train"], **TINY_LOOP}})
    params["adversarial"].update({"steps": 2, "text_eps": 0.05, "select_attack_steps": 2, "min_clean_ratio": 0.5,
                                  "train": {**params["adversarial"]["train"], **TINY_LOOP, "epochs": 2}})
    params["robustness"].update({"eps_absolute": [0.5], "eps_relative": [0.25], "steps": [1, 3], "strong_steps": 5,
                                 "strong_restarts": 2})
    params["gan"].update({"epochs": 2, "pretrain_epochs": 2, "batch_size": 32, "hidden": 32, "fake_ratio": 0.1,
                          "n_targets": 2})
    params["poisoning"].update({"fake_ratio": 0.1, "n_targets": 2})
    params["poisoning"]["gradient"].update({"steps": 3, "dim": 8})
    params["poisoning"]["gan_promotion"].update({"steps": 3, "dim": 8})
    params["gates"].update({"min_valid_ndcg": 0.0, "min_valid_worst_case": 0.0})  # tiny data has its own scale
    return params


def run_config(overrides: dict | None = None) -> dict:
    """Launchpad-style run config: params.yaml (the test's) plus these overrides on the rrec_config resource."""
    return {"resources": {"rrec_config": {"config": overrides or {}}}}


@pytest.fixture()
def project(tmp_path, tiny_bert, monkeypatch):
    write_tiny_atomic(tmp_path / "data" / "tiny")
    params = tiny_params("data/tiny", tiny_bert)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path, params


def _defs():
    from orchestration.definitions import defs

    return defs


def test_whole_chain_materializes(project):
    root, params = project
    defs = _defs()
    # an override of one section must reach every stage that uses it (fine-tuning and the poisoning arms)
    from dagster import AssetSelection

    result = materialize(list(defs.assets), resources=defs.resources, selection=AssetSelection.groups("rrec"),
                         run_config=run_config({"adversarial": {"eps": 0.3}}))
    assert result.success
    assert not (root / "artifacts" / "poisoning_grid").exists()  # a study (group studies), run by name or `rrec grid`
    for asset in ("raw_interactions", "validated_interactions", "item_text_embeddings", "pretrained_recommender",
                  "pretrain_evaluation", "cold_start_evaluation", "distillation", "gan_samples",
                  "adversarial_recommender",
                  "poisoning_evaluation", "robustness_evaluation", "recommendations", "text_attack_evaluation"):
        assert (root / "artifacts" / asset).is_dir(), asset
    from rrec_core.results import ColdStartResult

    cold = ColdStartResult.from_json((root / "metrics" / "cold_start.json").read_text())
    assert cold.enabled and cold.n_cold_test >= 1 and set(cold.models) == {
        "random", "popularity", "text_knn", "mf_bpr", "text_hybrid", "text_hybrid_cold_start",
        "text_hybrid_cold_start_guarded"}
    assert "text_hybrid_cold_start/cold_ndcg@10" in result.asset_materializations_for_node("cold_start_evaluation")[0].metadata
    from rrec_core.results import DistillationResult

    distilled = DistillationResult.from_json((root / "metrics" / "distillation.json").read_text())
    assert distilled.teacher_layers == 2 and distilled.student_layers == 0  # the tiny BERT's embeddings alone
    assert set(distilled.models) == {"teacher", "student", "student_no_distillation", "id_only"}
    assert distilled.models["teacher"].ndcg_retained == 1.0 and distilled.models["id_only"].encoder_layers is None
    dmeta = result.asset_materializations_for_node("distillation")[0].metadata
    assert dmeta["encode_speedup"].value > 0 and "seconds/student/score" in dmeta
    student = load_recommender(root / "artifacts" / "distillation" / "models" / "student")
    assert student.meta["encoder"]["layers"] == 0
    from rrec_core.results import PoisoningResult, PretrainResult, RobustnessResult

    metrics = PretrainResult.from_json((root / "metrics" / "pretrain.json").read_text()).models
    assert set(metrics) == {"mf_bpr", "text_hybrid"}
    assert 0 < metrics["mf_bpr"].test["ndcg@10"] <= 1 and "recall@5" in metrics["text_hybrid"].test
    assert "seconds" not in (root / "metrics" / "pretrain.json").read_text()  # timings are not tracked metrics
    assert "seconds" not in (root / "metrics" / "curves" / "mf_bpr.csv").read_text()
    assert (root / "metrics" / "curves" / "mf_bpr.csv").exists()
    assert "valid_ndcg@10_attacked" in (root / "metrics" / "adversarial_curves" / "mf_bpr.csv").read_text()

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"expectation_suite", "poisoning_screen", "item_text_sanitizer", "quality_gate"}
    assert all(c.passed for c in checks.values() if c.check_name == "quality_gate")
    assert checks["expectation_suite"].passed and checks["item_text_sanitizer"].passed  # generated text is clean
    assert checks["poisoning_screen"].metadata["quarantined_users"].value == 0  # clean generated data

    # the saved models honour the load_recommender contract
    import torch

    for name in ("mf_bpr", "text_hybrid"):
        m = load_recommender(root / "artifacts" / "pretrained_recommender" / name)
        assert m.score(torch.tensor([0, 1])).shape == (2, len(m.item_ids))
    mats = result.asset_materializations_for_node("pretrained_recommender")
    assert "training_curve" in mats[0].metadata

    # adversarial stage: LM tower carried over (text-side FGM ran), robustness report written
    assert (root / "artifacts" / "pretrained_recommender" / "text_hybrid" / "lm_tower.safetensors").exists()
    assert (root / "artifacts" / "adversarial_recommender" / "text_hybrid" / "lm_tower.safetensors").exists()
    rob = RobustnessResult.from_json((root / "metrics" / "robustness.json").read_text())
    assert set(rob.models) == {"pretrained/mf_bpr", "pretrained/text_hybrid", "adversarial/mf_bpr",
                               "adversarial/text_hybrid"}
    # pairwise: norms x (abs, rel) x steps; ranking: l2 x (abs, rel) x (listwise, margin, margin@1 at the strong
    # radii), linf x (abs, rel) x (listwise, margin)
    n_attacks = 2 * 2 * 2 + 1 * 2 * 3 + 1 * 2 * 2
    assert all(len(r.attacks) == n_attacks for r in rob.models.values())
    for r in rob.models.values():  # worst case at each radius of both norms, never above any single attack
        assert len(r.worst_case) == 4
        for w in r.worst_case:
            singles = [a.metrics["ndcg@10"] for a in r.attacks if (a.norm, a.scale, a.eps) == (w.norm, w.scale, w.eps)]
            assert w.ndcg <= min(singles) + 1e-6
    assert rob.models["adversarial/mf_bpr"].norms.user.mean > 0
    assert (root / "reports" / "robustness.md").read_text().startswith("# Robustness report")
    assert (root / "reports" / "robustness.png").stat().st_size > 1000
    meta = result.asset_materializations_for_node("robustness_evaluation")[0].metadata
    assert "headline" in meta and "ndcg_vs_eps" in meta and "worst case" in meta["headline"].value

    # GAN stage: generator saved (safetensors + JSON), profiles hold every target, stealth measured
    from rrec_core.artifacts import GanSamples

    gan = GanSamples.load(root / "artifacts" / "gan_samples")
    targets = gan.report.targets
    assert len(targets) == 2 and gan.report.n_fake == 4  # 10% of 40 users
    assert (gan.profiles.groupby("user_id")["item_id"].apply(lambda s: set(targets) <= set(s))).all()
    assert set(gan.report.attacks) == {"gan", "random", "bandwagon"}
    assert json.loads((root / "metrics" / "gan.json").read_text())["n_fake"] == 4
    assert set(gan.report.detector["columns"]) >= {"co_burst", "degsim"}  # the fine-tuning detector
    assert "detector_coefficients" in result.asset_materializations_for_node("gan_samples")[0].metadata

    # poisoning evaluation: every attack, every arm, real users only; a section of the robustness report
    pois = PoisoningResult.from_json((root / "metrics" / "poisoning.json").read_text())
    assert pois.enabled and set(pois.attacks) == {"gan_promotion", "gradient"}
    for res in pois.attacks.values():
        assert set(res.arms) == {"undefended", "gan_ft", "robust", "defended"} and res.n_fake == 4
        assert res.stealth is not None and 0 <= res.stealth["stealth_auc"] <= 1
    # the override reached both stages that use the adversarial section
    assert pois.config["adversarial"]["eps"] == 0.3
    from rrec_core.artifacts import TrainedModels

    adv = TrainedModels.load(root / "artifacts" / "adversarial_recommender")
    assert {m.meta["adversarial"]["eps"] for m in adv.models.values()} == {0.3}
    assert "## Data poisoning" in (root / "reports" / "robustness.md").read_text()
    assert (root / "reports" / "poisoning.png").stat().st_size > 1000
    assert "table" in result.asset_materializations_for_node("poisoning_evaluation")[0].metadata

    # recommendations: top-k new items of every user from the configured model, and the CLI on the same artefacts
    from rrec_core.artifacts import Recommendations, ValidatedData

    rec = Recommendations.load(root / "artifacts" / "recommendations")
    data = ValidatedData.load(root / "artifacts" / "validated_interactions")
    assert rec.model == "adversarial/text_hybrid" and rec.top_k["user_id"].nunique() == data.split.n_users
    assert (rec.top_k.groupby("user_id")["rank"].apply(list) == [list(range(1, rec.k + 1))] * data.split.n_users).all()
    seen = set(map(tuple, data.split.to_frame()[["user_id", "item_id"]].to_numpy().tolist()))  # train, valid, test
    assert not any((u, i) in seen for u, i in rec.top_k[["user_id", "item_id"]].itertuples(index=False))
    assert "preview" in result.asset_materializations_for_node("recommendations")[0].metadata
    from orchestration.cli import main

    user = data.split.user_ids[0]
    assert main(["recommend", user, "-k", "3"]) == 0
    assert main(["recommend", user, "no-such-user"]) == 2


def test_quality_gate_keeps_the_better_model_and_blocks_downstream(project):
    """Retraining with a sabotaged setting (learning rate 0: the models stay at their initialization) fails the
    gate against the previous materialization: the previous models stay on disk, nothing downstream runs, and
    the check's metadata shows old against new."""
    from dagster import DagsterInstance

    root, _ = project
    defs = _defs()
    instance = DagsterInstance.ephemeral()
    selection = "*pretrain_evaluation"
    first = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(), instance=instance,
                        selection=selection)
    assert first.success
    saved = {p: p.read_bytes() for p in (root / "artifacts" / "pretrained_recommender").rglob("*.safetensors")}
    metrics = (root / "metrics" / "pretrain.json").read_bytes()
    again = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(), instance=instance,
                        selection=selection)
    assert again.success  # the same setting retrains the same models: no drop
    sabotaged = {"pretrain": {"mf_bpr": {"lr": 0.0}, "text_hybrid": {"lr": 0.0}}}
    result = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(sabotaged),
                         instance=instance, selection=selection, raise_on_error=False)
    assert not result.success
    gate = [c for c in result.get_asset_check_evaluations() if c.check_name == "quality_gate"][0]
    assert not gate.passed and "below the previous" in gate.metadata["failures"].value
    assert "| mf_bpr | valid_ndcg@10 |" in gate.metadata["gate"].value
    assert {p: p.read_bytes() for p in saved} == saved  # the previous models are kept
    assert (root / "metrics" / "pretrain.json").read_bytes() == metrics
    assert not result.asset_materializations_for_node("pretrain_evaluation")
    # the gate can be switched off for a run that should replace the model anyway
    accepted = materialize(list(defs.assets), resources=defs.resources, instance=instance, selection=selection,
                           run_config=run_config({**sabotaged, "gates": {"enabled": False}}))
    assert accepted.success


def test_the_gate_compares_with_the_model_on_disk_not_the_last_run(project):
    """After `dvc checkout` or `git checkout` the model on disk is not the last run's; the gate judges a retrained
    model against the one it would replace: the artefact on disk."""
    import json

    from dagster import DagsterInstance

    root, _ = project
    defs = _defs()
    instance = DagsterInstance.ephemeral()
    selection = "*pretrained_recommender"
    assert materialize(list(defs.assets), resources=defs.resources, run_config=run_config(), instance=instance,
                       selection=selection).success
    # the model on disk is replaced by a (pretend) much better one, as a checkout of another version would
    hist_path = root / "artifacts" / "pretrained_recommender" / "mf_bpr" / "history.json"
    best = json.loads((hist_path.parent / "config.json").read_text())["meta"]["best_epoch"]
    history = json.loads(hist_path.read_text())
    for h in history:
        if h["epoch"] == best:
            h["valid_ndcg@10"] = 0.99
    hist_path.write_text(json.dumps(history))
    result = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(), instance=instance,
                         selection=selection, raise_on_error=False)
    assert not result.success  # the same setting as the last run, but worse than the model on disk
    gate = [c for c in result.get_asset_check_evaluations() if c.check_name == "quality_gate"][0]
    assert "below the previous 0.9900" in gate.metadata["failures"].value
    assert "artefact on disk" in gate.metadata["previous"].value
    assert json.loads(hist_path.read_text()) == history  # and it is kept


def test_the_gate_measures_the_previous_model_again_when_the_selection_attack_changes(project):
    """A new training radius is a new selection attack: the previous adversarial model on disk is measured
    under it, so old and new are compared on the same number (models with tuned LM layers, which the
    re-measurement does not rebuild, are left uncompared and the table says so)."""
    from dagster import DagsterInstance

    root, params = project
    defs = _defs()
    instance = DagsterInstance.ephemeral()
    selection = "*adversarial_recommender"
    assert materialize(list(defs.assets), resources=defs.resources, run_config=run_config(), instance=instance,
                       selection=selection).success
    eps = params["adversarial"]["eps"]
    wider = run_config({"adversarial": {"eps": 2 * eps}})
    result = materialize(list(defs.assets), resources=defs.resources, run_config=wider, instance=instance,
                         selection="adversarial_recommender", raise_on_error=False)
    gate = [c for c in result.get_asset_check_evaluations() if c.check_name == "quality_gate"
            and c.asset_key.to_user_string() == "adversarial_recommender"][0]
    table = gate.metadata["gate"].value
    mf = [line for line in table.splitlines() if line.startswith("| mf_bpr | valid_worst_case |")][0]
    assert "measured again under this attack" in mf and f"eps {eps} " in mf and f"eps {2 * eps} " not in mf.split("it had")[1]
    assert " — |" not in mf  # a previous number, compared
    hybrid = [line for line in table.splitlines() if line.startswith("| text_hybrid | valid_worst_case |")][0]
    assert "not compared with the previous" in hybrid and "| — |" in hybrid  # tuned LM layers: not re-measured


def test_dirty_data_blocks_downstream(project):
    root, params = project
    inter = root / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    fields = lines[6].split("\t")
    fields[2] = "9"  # rating out of range on line 7
    lines[6] = "\t".join(fields)
    inter.write_text("\n".join(lines) + "\n")
    defs = _defs()
    result = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(),
                         raise_on_error=False)
    assert not result.success
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "expectation_suite"][0]
    assert not check.passed
    failures = check.metadata["failures"].value
    assert failures[0]["column"] == "rating" and failures[0]["examples"][0]["row"] == 7
    assert not (root / "artifacts" / "validated_interactions").exists()
    assert not (root / "artifacts" / "pretrained_recommender").exists()
    assert not (root / "metrics" / "pretrain.json").exists()


def test_launchpad_fields_carry_the_schema_descriptions():
    """Every launchpad field of the run config shows its rrec_core.config description."""
    from rrec_core.config import AdversarialConfig

    fields = _defs().resources["rrec_config"].to_config_schema().as_field().config_type.fields
    adv = fields["adversarial"].config_type.fields
    assert adv["eps"].description.startswith(AdversarialConfig.model_fields["eps"].description)
    assert adv["train"].config_type.fields["lr"].description
    missing = [(s, k) for s, f in fields.items() if hasattr(f.config_type, "fields")
               for k, v in f.config_type.fields.items() if not v.description]
    assert not missing


def test_definitions_load_with_schedule_and_sensor():
    defs = _defs()
    assert defs.resolve_job_def("retrain") is not None
    assert defs.resolve_schedule_def("weekly_retraining").cron_schedule == "0 3 * * 1"
    assert defs.resolve_sensor_def("data_version_sensor") is not None


def test_sensor_fires_once_per_data_version(tmp_path, monkeypatch):
    from dagster import build_sensor_context

    from orchestration.automation import data_version_sensor

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.dvc").write_text("outs:\n- md5: aaa.dir\n  path: data\n")
    ctx = build_sensor_context(cursor=None)
    first = data_version_sensor(ctx)
    assert first.run_key == "data-aaa.dir"
    assert ctx.cursor == "aaa.dir"
    assert data_version_sensor(build_sensor_context(cursor="aaa.dir")).__class__.__name__ == "SkipReason"
    (tmp_path / "data.dvc").write_text("outs:\n- md5: bbb.dir\n  path: data\n")
    assert data_version_sensor(build_sensor_context(cursor="aaa.dir")).run_key == "data-bbb.dir"


def test_screen_quarantines_injected_users(tmp_path):
    """Fake profiles injected into the raw data are listed with scores and kept out of the split."""
    from conftest import write_tiny_atomic

    from rrec_core.artifacts import RawData
    from rrec_core.config import DataConfig, SplitConfig, ValidationConfig
    from rrec_core.data import Dataset, load_dataset
    from rrec_core.pipeline import validate_and_split
    from rrec_core.poisoning import inject_attack

    path = write_tiny_atomic(tmp_path / "d" / "tiny", n_users=200, n_items=300, per_user=25)
    ds = load_dataset(DataConfig(path=str(path)))
    poisoned = inject_attack(ds.interactions, attack="bandwagon", fake_ratio=0.05, seed=1)
    inter = poisoned.interactions
    inter.attrs.update(ds.interactions.attrs)
    data = validate_and_split(RawData(Dataset(inter, ds.items, "tiny")), ValidationConfig(), SplitConfig())
    caught = set(data.quarantine["user_id"]) & set(poisoned.fake_users)
    assert len(caught) >= 0.8 * len(poisoned.fake_users)
    assert not caught & set(data.split.user_ids)
    assert (data.quarantine["score"] >= 1).all()
