"""The poisoning grid: cells, the summary's arithmetic, one real cell, and the Dagster job running cells in
parallel processes (multiprocess executor, dynamic outputs)."""
import json
import os
import re

import pytest
import yaml
from conftest import write_tiny_atomic

from rrec_core.config import PoisoningGridConfig
from rrec_core.evaluation.poisoning_grid import CLEAN, GridCell, grid_cells, summarize_grid


def test_cells_cover_the_grid_with_one_clean_cell_per_seed_and_dagster_safe_keys():
    cfg = PoisoningGridConfig(attacks=("bandwagon", "gradient"), fake_ratios=(0.005, 0.03), seeds=(1, 2, 3))
    cells = grid_cells(cfg)
    assert len(cells) == 3 + 2 * 2 * 3
    assert [c for c in cells if c.attack == CLEAN] == [GridCell(CLEAN, 0.0, s) for s in (1, 2, 3)]
    keys = [c.key for c in cells]
    assert len(set(keys)) == len(keys) and all(re.fullmatch(r"[A-Za-z0-9_]+", k) for k in keys)
    assert "gradient_0p5pct_seed2" in keys and GridCell.from_key("gradient_0p5pct_seed2", cfg) == GridCell(
        "gradient", 0.005, 2)


def _cell(attack, ratio, seed, arms):
    base = {"target_hit@10": 0.0, "target_exposure@50": 0.0, "target_percentile": 0.5, "ndcg@10": 0.3}
    return {"attack": attack, "fake_ratio": ratio, "seed": seed, "screen": None,
            "arms": {arm: {**base, "target_hit@50": hr, "ndcg@10": nd} for arm, (hr, nd) in arms.items()}}


def test_summary_promotion_is_over_the_same_seeds_clean_cell_and_kept_is_a_share_of_the_undefended():
    cells = [_cell(CLEAN, 0.0, 1, {"undefended": (0.01, 0.30), "robust": (0.00, 0.29)}),
             _cell(CLEAN, 0.0, 2, {"undefended": (0.03, 0.30), "robust": (0.02, 0.31)}),
             _cell("gradient", 0.03, 1, {"undefended": (0.11, 0.30), "robust": (0.03, 0.29)}),
             _cell("gradient", 0.03, 2, {"undefended": (0.07, 0.30), "robust": (0.02, 0.31)})]
    rows = {(r["attack"], r["arm"]): r for r in summarize_grid(cells)}
    und, rob = rows[("gradient", "undefended")], rows[("gradient", "robust")]
    assert und["target_hit@50"] == pytest.approx(0.09) and und["target_hit@50_min"] == pytest.approx(0.07)
    assert und["promotion@50"] == pytest.approx(((0.11 - 0.01) + (0.07 - 0.03)) / 2)  # 0.07
    assert rob["promotion@50"] == pytest.approx(((0.03 - 0.00) + (0.02 - 0.02)) / 2)  # 0.015
    assert rob["promotion@50_kept"] == pytest.approx(0.015 / 0.07)
    assert rows[(CLEAN, "robust")]["ndcg@10_cost"] == pytest.approx(0.0)  # 0.30 vs 0.30 on average


def test_a_bandwagon_cell_promotes_its_target_over_the_clean_cell():
    """A real cell of each kind on a small Zipf table (tests/test_poisoning.py): the attack bites, so the grid
    measures something (measured: target HR@50 0.00 -> 0.13 with 5% bandwagon fakes on this table)."""
    from test_poisoning import synthetic_interactions

    from rrec_core.config import AdversarialConfig, MFConfig, PoisoningEvalConfig, ScreenConfig, SplitConfig
    from rrec_core.data.split import split_interactions
    from rrec_core.evaluation.poisoning_grid import evaluate_grid_cell

    inter = synthetic_interactions(n_users=200, n_items=250, seed=7, ratings=False)
    split = split_interactions(inter, SplitConfig(seed=0))
    cfg = PoisoningGridConfig(attacks=("bandwagon",), fake_ratios=(0.05,), seeds=(1,), arms=("undefended", "screened"))
    mf = MFConfig(embedding_dim=16, lr=0.01, batch_size=256, epochs=30, patience=100, device="cpu", eval_every=30)
    out = {}
    for cell in grid_cells(cfg):
        out[cell.attack] = evaluate_grid_cell(inter, split, cell, cfg, PoisoningEvalConfig(), ScreenConfig(), mf,
                                              AdversarialConfig(), threads=1)
    clean, attacked = out[CLEAN], out["bandwagon"]
    assert clean["targets"] == attacked["targets"] and clean["n_fake"] == 0 and attacked["n_fake"] == 10
    und, ref = attacked["arms"]["undefended"], clean["arms"]["undefended"]
    assert und["target_hit@50"] > ref["target_hit@50"] + 0.05, (ref, und)
    assert und["target_percentile"] > ref["target_percentile"] + 0.1, (ref, und)
    assert attacked["screen"]["injected"] == 10 and clean["screen"]["injected"] == 0
    json.dumps(attacked)  # what the cell hands to the summary must be JSON


@pytest.fixture()
def grid_project(tmp_path, monkeypatch):
    from test_pipeline_e2e import tiny_params

    write_tiny_atomic(tmp_path / "data" / "tiny", n_users=60, n_items=60, per_user=12)
    params = tiny_params("data/tiny", tmp_path / "no-bert")  # the grid reads no text
    params["poisoning_grid"] = {"attacks": ["bandwagon"], "fake_ratios": [0.1], "seeds": [1, 2],
                                "arms": ["undefended", "screened"], "workers": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_grid_job_runs_its_cells_in_parallel_processes(grid_project):
    from dagster import DagsterInstance, execute_job, materialize, reconstructable

    from orchestration.definitions import defs, poisoning_grid_job_def

    root = grid_project
    upstream = [a for a in defs.assets if a.key.to_user_string() in  # type: ignore[union-attr]
                ("raw_interactions", "validated_interactions", "gan_samples")]
    assert materialize(upstream, resources=defs.resources).success
    (root / ".dagster").mkdir()
    with DagsterInstance.local_temp(str(root / ".dagster")) as instance:
        result = execute_job(reconstructable(poisoning_grid_job_def), instance=instance)
        assert result.success
        steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert {"poisoning_grid.poisoning_grid_cell[none_seed1]", "poisoning_grid.poisoning_grid_cell[bandwagon_10pct_seed2]",
            "poisoning_grid.poisoning_grid_summary"} <= steps
    grid = json.loads((root / "metrics" / "poisoning_grid.json").read_text())
    cells = grid["cells"]
    assert sorted(c["cell"] for c in cells) == ["bandwagon_10pct_seed1", "bandwagon_10pct_seed2", "none_seed1",
                                                "none_seed2"]
    workers = [c["worker"] for c in cells]
    assert len({w["pid"] for w in workers}) >= 2  # each step in its own process
    overlapping = any(a["started"] < b["finished"] and b["started"] < a["finished"]
                      for i, a in enumerate(workers) for b in workers[i + 1:])
    assert overlapping, workers  # two cells at once: workers = 2
    assert all(w["threads"] == max(1, (os.cpu_count() or 1) // 2) for w in workers)  # the cores shared by 2 workers
    assert {(r["attack"], r["arm"]) for r in grid["summary"]} >= {("bandwagon", "undefended"), ("none", "screened")}
    assert (root / "reports" / "poisoning_grid.md").read_text().startswith("# Poisoning grid")
