"""dvc.yaml is generated from the asset graph and its imports, and dvc.lock describes the committed code."""
import json
import subprocess

import pytest
import yaml
from conftest import ROOT
from test_dvc_repro import _dvc


def test_dvc_yaml_is_the_generated_one():
    from orchestration.dvc_stages import render

    assert (ROOT / "dvc.yaml").read_text() == render(), "run `python -m orchestration.dvc_stages`"


def _deps(stage: str) -> list[str]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]


def test_code_deps_follow_lazy_imports_and_nothing_else():
    # validate_and_split reaches the screen through a function-level import inside pipeline.py
    assert "rrec_core/poisoning/screen.py" in _deps("validated_interactions")
    assert "rrec_core/validation.py" in _deps("validated_interactions")
    # the text encoder stage runs no training, attack or poisoning code
    enc = _deps("item_text_embeddings")
    assert not [d for d in enc if d.startswith(("rrec_core/training", "rrec_core/poisoning", "rrec_core/ops"))]
    # the robustness report renders the poisoning section: it depends on that code
    rob = _deps("robustness_evaluation")
    assert "rrec_core/reporting/poisoning.py" in rob and "csrc" in rob and "rrec_core/config.py" in rob
    assert "rrec_core/reporting/results_doc.py" not in rob  # a docs tool, no stage runs it
    # every stage runs the definitions and the config schema
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]:
        assert {"orchestration/resources.py", "rrec_core/config.py", "rrec_core/io.py"} <= set(_deps(stage)), stage


def test_params_follow_the_config_sections_each_asset_reads():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["poisoning_evaluation"]["params"] == ["adversarial", "poisoning", "pretrain.mf_bpr",
                                                        "validation.screen"]
    assert stages["pretrained_recommender"]["params"] == ["gates", "pretrain"]  # training and its quality gate
    assert stages["robustness_evaluation"]["params"] == ["evaluation", "robustness"]


def test_published_files_are_declared_outputs():
    from orchestration.definitions import defs
    from rrec_core.outputs import PUBLISHED

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    # studies (the poisoning grid) run by name or `rrec grid`, not in `dvc repro`: their files are committed by git
    graph = defs.resolve_asset_graph()
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert {a for a in PUBLISHED if a not in stages} == {a for a in PUBLISHED if groups[a] == "studies"} == {
        "poisoning_grid"}
    for asset, decls in ((a, d) for a, d in PUBLISHED.items() if a in stages):
        declared = {next(iter(o)) for key in ("metrics", "plots", "outs") for o in stages[asset].get(key, [])
                    if isinstance(o, dict) and not next(iter(o)).startswith("artifacts/")}
        assert {d.path for d in decls} == declared, asset


def test_no_stage_output_is_deleted_before_its_stage_runs():
    """DVC deletes a stage's outputs before running it unless they are `persist`; then a quality gate that fails
    under `dvc repro` would leave no model at all. Every output is persistent: the IO manager replaces it
    atomically when (and only when) the asset succeeds."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        outs = [o for key in ("metrics", "plots", "outs") for o in stage.get(key, [])]
        assert {f"artifacts/{name}"} <= {next(iter(o)) for o in outs}, name
        for o in outs:
            assert isinstance(o, dict) and next(iter(o.values())).get("persist") is True, (name, o)


@pytest.mark.skipif(_dvc() is None, reason="DVC tool environment not found (make setup creates .venv-dvc)")
def test_dvc_lock_describes_the_committed_code_and_params():
    """`dvc status` may report missing artefacts (a fresh clone has none) but no changed code or params:
    whoever changes a stage's code or params re-runs it (`make repro`) and commits dvc.lock."""
    proc = subprocess.run([_dvc(), "status", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    stale = {}
    for stage, changes in json.loads(proc.stdout or "{}").items():
        for change in changes:
            if not isinstance(change, dict):
                stale.setdefault(stage, []).append(change)  # e.g. "changed command"
                continue
            for path, what in change.get("changed deps", {}).items():
                if not path.startswith("artifacts/"):
                    stale.setdefault(stage, []).append(f"{path}: {what}")
    assert not stale, f"dvc.lock is stale (run make repro and commit dvc.lock): {stale}"
