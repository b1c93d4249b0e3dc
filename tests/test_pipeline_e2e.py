"""The whole Dagster chain, materialized in-process on a tiny generated dataset and a tiny BERT."""
import json
import shutil
from pathlib import Path

import pytest
import yaml
from dagster import materialize

from conftest import write_tiny_atomic

TINY_TRAIN = {"embedding_dim": 8, "lr": 0.01, "batch_size": 128, "epochs": 4, "patience": 3, "device": "cpu"}


def tiny_params(data_path: str, bert: Path) -> dict:
    """The project's params.yaml with the data, model and training shrunk to seconds."""
    from conftest import ROOT

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["path"] = data_path
    params["encoder"].update({"model": str(bert), "device": "cpu", "batch_size": 16})
    params["pretrain"]["mf_bpr"].update(TINY_TRAIN)
    params["pretrain"]["text_hybrid"].update({**TINY_TRAIN, "lm_finetune_layers": 1, "lm_lr": 1e-4})
    params["evaluation"]["ks"] = [5, 10]
    params["adversarial"].update({"steps": 2, "text_eps": 0.05, "select_attack_steps": 2, "min_clean_ratio": 0.5,
                                  "train": {**params["adversarial"]["train"], **TINY_TRAIN, "epochs": 2}})
    params["robustness"].update({"eps_absolute": [0.5], "eps_relative": [0.25], "steps": [1, 3]})
    params["gan"].update({"epochs": 2, "pretrain_epochs": 2, "batch_size": 32, "hidden": 32, "fake_ratio": 0.1,
                          "n_targets": 2})
    params["poisoning"].update({"fake_ratio": 0.1, "n_targets": 2})
    return params


def run_config(params: dict) -> dict:
    return {"ops": {"raw_interactions": {"config": params["data"]},
                    "item_text_embeddings": {"config": params["encoder"]},
                    "pretrained_recommender": {"config": params["pretrain"]},
                    "pretrain_evaluation": {"config": params["evaluation"]},
                    "adversarial_recommender": {"config": params["adversarial"]},
                    "robustness_evaluation": {"config": params["robustness"]},
                    "gan_samples": {"config": params["gan"]},
                    "poisoning_evaluation": {"config": params["poisoning"]}}}


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
    result = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(params))
    assert result.success
    for asset in ("raw_interactions", "validated_interactions", "item_text_embeddings", "pretrained_recommender",
                  "pretrain_evaluation", "gan_samples", "adversarial_recommender", "poisoning_evaluation",
                  "robustness_evaluation"):
        assert (root / "artifacts" / asset).is_dir(), asset
    metrics = json.loads((root / "metrics" / "pretrain.json").read_text())
    assert set(metrics) == {"mf_bpr", "text_hybrid"}
    assert 0 <= metrics["mf_bpr"]["ndcg@10"] <= 1 and "recall@5" in metrics["text_hybrid"]
    assert (root / "metrics" / "curves" / "mf_bpr.csv").exists()
    assert "valid_ndcg@10_attacked" in (root / "metrics" / "adversarial_curves" / "mf_bpr.csv").read_text()

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"expectation_suite", "poisoning_screen"} and checks["expectation_suite"].passed
    assert checks["poisoning_screen"].metadata["quarantined_users"].value == 0  # clean generated data

    # the saved models honour the load_recommender contract
    import torch
    from rrec_core import load_recommender

    for name in ("mf_bpr", "text_hybrid"):
        m = load_recommender(root / "artifacts" / "pretrained_recommender" / name)
        assert m.score(torch.tensor([0, 1])).shape == (2, len(m.item_ids))
    mats = result.asset_materializations_for_node("pretrained_recommender")
    assert "training_curve" in mats[0].metadata

    # adversarial stage: LM tower carried over (text-side FGM ran), robustness report written
    assert (root / "artifacts" / "pretrained_recommender" / "text_hybrid" / "lm_tower.safetensors").exists()
    assert (root / "artifacts" / "adversarial_recommender" / "text_hybrid" / "lm_tower.safetensors").exists()
    rob = json.loads((root / "metrics" / "robustness.json").read_text())
    assert set(rob["models"]) == {"pretrained/mf_bpr", "pretrained/text_hybrid", "adversarial/mf_bpr",
                                  "adversarial/text_hybrid"}
    n_attacks = 2 * 2 * 2  # norms x (abs, rel) x steps
    assert all(len(r["attacks"]) == n_attacks for r in rob["models"].values())
    assert "mean" in rob["models"]["adversarial/mf_bpr"]["norms"]["user"]
    assert (root / "reports" / "robustness.md").read_text().startswith("# Robustness report")
    assert (root / "reports" / "robustness.png").stat().st_size > 1000
    meta = result.asset_materializations_for_node("robustness_evaluation")[0].metadata
    assert "headline" in meta and "ndcg_vs_eps" in meta

    # GAN stage: generator saved (safetensors + JSON), profiles hold every target, stealth measured
    from rrec_core.artifacts import GanSamples

    gan = GanSamples.load(root / "artifacts" / "gan_samples")
    targets = gan.report["targets"]
    assert len(targets) == 2 and gan.report["n_fake"] == 4  # 10% of 40 users
    assert (gan.profiles.groupby("user_id")["item_id"].apply(lambda s: set(targets) <= set(s))).all()
    assert set(gan.report["attacks"]) == {"gan", "random", "bandwagon"}
    assert (root / "metrics" / "gan.json").exists()
    assert set(gan.report["detector"]["columns"]) >= {"co_burst", "degsim"}  # the fine-tuning detector
    assert "detector_coefficients" in result.asset_materializations_for_node("gan_samples")[0].metadata

    # poisoning evaluation: both attacks, every arm, real users only; a section of the robustness report
    pois = json.loads((root / "metrics" / "poisoning.json").read_text())
    assert pois["enabled"] and set(pois["attacks"]) == {"bandwagon", "gan"}
    for res in pois["attacks"].values():
        assert {"undefended", "gan_ft", "defended"} <= set(res) and res["n_fake"] == 4
    assert "## Data poisoning" in (root / "reports" / "robustness.md").read_text()
    assert (root / "reports" / "poisoning.png").stat().st_size > 1000
    assert "table" in result.asset_materializations_for_node("poisoning_evaluation")[0].metadata


def test_dirty_data_blocks_downstream(project):
    root, params = project
    inter = root / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    fields = lines[6].split("\t")
    fields[2] = "9"  # rating out of range on line 7
    lines[6] = "\t".join(fields)
    inter.write_text("\n".join(lines) + "\n")
    defs = _defs()
    result = materialize(list(defs.assets), resources=defs.resources, run_config=run_config(params),
                         raise_on_error=False)
    assert not result.success
    check = [c for c in result.get_asset_check_evaluations() if c.check_name == "expectation_suite"][0]
    assert not check.passed
    failures = check.metadata["failures"].value
    assert failures[0]["column"] == "rating" and failures[0]["examples"][0]["row"] == 7
    assert not (root / "artifacts" / "validated_interactions").exists()
    assert not (root / "artifacts" / "pretrained_recommender").exists()
    assert not (root / "metrics" / "pretrain.json").exists()


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
