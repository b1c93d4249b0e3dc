"""`dvc repro` in a temporary git repo: same code as the assets, params drive what re-runs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, write_tiny_atomic
from test_pipeline_e2e import tiny_params


def _dvc() -> str | None:
    for cand in (os.environ.get("RREC_DVC"), str(ROOT / ".venv-dvc" / "bin" / "dvc"), shutil.which("dvc")):
        if cand and Path(cand).exists():
            return cand
    return None


def _run(cmd, cwd, check=True):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.skipif(_dvc() is None, reason="DVC tool environment not found (make setup creates .venv-dvc)")
def test_dvc_repro_runs_the_asset_chain(tmp_path, tiny_bert):
    dvc = _dvc()
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("rrec_core", "orchestration", "csrc"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    os.symlink(sys.prefix, repo / ".venv")  # stages call .venv/bin/dagster
    write_tiny_atomic(repo / "data" / "tiny")
    params = tiny_params("data/tiny", tiny_bert)
    params["pretrain"]["text_hybrid"]["lm_finetune_layers"] = 0
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / ".gitignore").write_text("/artifacts/\n/.venv\n")
    _run(["git", "init", "-q"], repo)
    _run([dvc, "init", "-q"], repo)

    _run([dvc, "repro"], repo)
    metrics = json.loads((repo / "metrics" / "pretrain.json").read_text())
    assert set(metrics) == {"mf_bpr", "text_hybrid"}
    assert (repo / "dvc.lock").exists()
    shown = _run([dvc, "metrics", "show", "--json"], repo).stdout
    assert "ndcg@10" in shown
    # every stage recorded its run in the project's Dagster instance, the one `make ui` and `rrec run` use
    from dagster import AssetKey, DagsterInstance

    instance = DagsterInstance.from_config(str(repo / ".dagster"))
    event = instance.get_latest_materialization_event(AssetKey("pretrained_recommender"))
    assert event is not None and "mf_bpr/best_epoch" in event.asset_materialization.metadata
    assert len(instance.get_runs()) == len(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])

    # one training parameter changes: training and its evaluation re-run, their inputs do not (the target
    # keeps the check to the two stages; every later stage depends on pretrained_recommender the same way)
    params["pretrain"]["mf_bpr"]["lr"] = 0.02
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert "pretrained_recommender" in _run([dvc, "status"], repo).stdout
    out = _run([dvc, "repro", "pretrain_evaluation"], repo).stdout
    for unchanged in ("raw_interactions", "validated_interactions", "item_text_embeddings"):
        assert f"Stage '{unchanged}' didn't change, skipping" in out
    assert "Running stage 'pretrained_recommender'" in out and "Running stage 'pretrain_evaluation'" in out
    assert "Running stage 'adversarial_recommender'" not in out  # not a dependency of the target
    assert "adversarial_recommender" in _run([dvc, "status"], repo).stdout  # but stale now

    # a retrained model that fails its quality gate under `dvc repro`: the stage fails, and the previous model
    # and its published curves are still on disk, byte for byte (DVC did not delete them before the stage ran)
    _run([dvc, "repro", "pretrained_recommender"], repo)
    kept = {p: p.read_bytes() for d in ("artifacts/pretrained_recommender", "metrics/curves")
            for p in sorted((repo / d).rglob("*")) if p.is_file()}
    assert any(p.suffix == ".safetensors" for p in kept)
    params["gates"] = {**params.get("gates", {}), "enabled": True, "min_valid_ndcg": 0.99}  # out of reach
    params["pretrain"]["mf_bpr"]["lr"] = 0.03
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _run([dvc, "repro", "pretrained_recommender"], repo, check=False)
    assert proc.returncode != 0 and "quality gate failed" in proc.stdout + proc.stderr
    assert {p: p.read_bytes() for p in kept} == kept
    params["gates"]["min_valid_ndcg"] = 0.0
    params["pretrain"]["mf_bpr"]["lr"] = 0.02
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    # bad data fails the validation stage and nothing downstream runs
    inter = repo / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    fields = lines[3].split("\t")
    fields[2] = "11"
    lines[3] = "\t".join(fields)
    inter.write_text("\n".join(lines) + "\n")
    before = (repo / "metrics" / "pretrain.json").read_text()
    proc = _run([dvc, "repro"], repo, check=False)
    assert proc.returncode != 0
    assert "Running stage 'validated_interactions'" in proc.stdout
    assert "Running stage 'pretrained_recommender'" not in proc.stdout
    log = proc.stdout + proc.stderr
    assert "rating" in log and "row 4" in log
    assert (repo / "metrics" / "pretrain.json").read_text() == before
