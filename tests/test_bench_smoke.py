"""Every benchmark script documented in bench/README.md runs at the current defaults (tiny inputs:
the figures mean nothing here; bench/results/ holds the real measurements)."""
import subprocess
import sys

import pytest
from conftest import ROOT
from dagster import materialize
from test_pipeline_e2e import project  # noqa: F401  (fixture)

import rrec_core.ops as ops

needs_cpu_kernels = pytest.mark.skipif(not ops.backends().get("cpu"), reason="rrec ops not built")


@needs_cpu_kernels
def test_bench_ops_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_ops.py"), "--device", "cpu", "--no-compile",
                           "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(tmp_path.glob("ops_*.md")).read_text()
    assert "| pgd_l2 |" in md and "naive / BPR" in md and "rrec / BPR" in md


@needs_cpu_kernels
def test_bench_apr_rows_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_apr_rows.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(tmp_path.glob("apr_step_cpu_*_smoke.md")).read_text()
    assert "| 50 × 80 × 16 | 64 |" in md and "(c) APR, rrec AdversarialLoss" in md


@needs_cpu_kernels
def test_bench_adversarial_stage_smoke(project, tmp_path):  # noqa: F811
    root, _ = project
    from orchestration.definitions import defs

    upstream = ["raw_interactions", "validated_interactions", "item_text_embeddings", "pretrained_recommender",
                "gan_samples", "distillation"]
    assert materialize([a for a in defs.assets if a.key.to_user_string() in upstream],
                       resources=defs.resources).success
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_adversarial_stage

    out = tmp_path / "results"
    bench_adversarial_stage.main(["--device", "cpu", "--artifacts", str(root / "artifacts"),
                                  "--params", str(root / "params.yaml"), "--out", str(out)])
    md = next(out.glob("adversarial_stage_*.md")).read_text()
    assert "| rrec |" in md and "| reference |" in md

    # the defence-variant bench reads the same artefacts
    import robust_defence

    robust_defence.main(["--smoke", "--artifacts", str(root / "artifacts"), "--params", str(root / "params.yaml"),
                         "--out", str(out)])
    md = next(out.glob("robust_defence_*_smoke.md")).read_text()
    assert "| none (pretrained) |" in md and "worst case L2 ε=0.5 abs" in md
    # each ball in its own column: keyed by scale alone, the L-inf worst case once stood under the L2 heading
    assert "| L∞ ε=0.0625 abs | L∞ ε=0.03125 rel |" in md

    # the cold-start bench reads validated_interactions and item_text_embeddings
    import cold_start

    cold_start.main(["--smoke", "--artifacts", str(root / "artifacts"), "--params", str(root / "params.yaml"),
                     "--out", str(out)])
    md = next(out.glob("cold_start_*_smoke.md")).read_text()
    assert "| text_hybrid_cold_start |" in md and "| text_knn |" in md

    import lm_finetune

    lm_finetune.main(["--smoke", "--artifacts", str(root / "artifacts"), "--params", str(root / "params.yaml"),
                      "--out", str(out)])
    md = next(out.glob("lm_finetune_*_smoke.md")).read_text()
    assert "| frozen LM (default) |" in md and "| top 1 layer, lagged 10 steps, lm_lr 1e-4 |" in md

    import distillation

    distillation.main(["--smoke", "--artifacts", str(root / "artifacts"), "--out", str(out)])
    md = next(out.glob("distillation_*_smoke.md")).read_text()
    assert "| 0 | " in md and "| 2 | " in md and "| student |" in md and "| teacher |" in md

    import score_gaps

    score_gaps.main(["--epochs", "1", "--artifacts", str(root / "artifacts"), "--params", str(root / "params.yaml"),
                     "--out", str(out)])
    md = next(out.glob("score_gaps_*.md")).read_text()
    assert "| none (pretrained) |" in md and "hard negatives 20" in md


@pytest.mark.cuda
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device (profile_ops, ncu_ops)")
@pytest.mark.parametrize("script,args", [("profile_ops.py", ["--batch", "256"]), ("ncu_ops.py", [])])
def test_cuda_bench_scripts_run(script, args, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args,
                           *(["--out", str(tmp_path)] if script == "profile_ops.py" else [])],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("script", ["screen_grid.py", "gan_stealth.py", "hybrid_ablation.py", "poisoning_strength.py",
                                    "screen_protocol.py", "poisoning_defence.py"])
def test_doc_table_scripts_smoke(script, tmp_path):
    """The scripts behind docs/poisoning.md, docs/gan.md and docs/architecture.md's measured tables."""
    if script == "hybrid_ablation.py" and not (ROOT / "data" / "ml-100k").is_dir():
        pytest.skip("ML-100K not pulled (make data)")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list(tmp_path.glob("*.md")), "no result table written"


def test_bench_attack_strength_smoke(project, tmp_path):  # noqa: F811
    root, _ = project
    from orchestration.definitions import defs

    assert materialize(list(defs.assets), resources=defs.resources, selection="*adversarial_recommender").success
    sys.path.insert(0, str(ROOT / "bench"))
    import attack_strength

    out = tmp_path / "results"
    attack_strength.main(["--smoke", "--artifacts", str(root / "artifacts"), "--params", str(root / "params.yaml"),
                          "--out", str(out)])
    md = next(out.glob("attack_strength_*_smoke.md")).read_text()
    assert "| pretrained/mf_bpr | l2 absolute 0.5 |" in md and "| pretrained/mf_bpr | l2 relative 0.25 |" in md


def test_bench_scale_smoke(tmp_path):
    """bench/scale.py writes a synthetic set and materializes stages through `rrec run` in a scratch project."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "scale.py"), "--smoke", "--work", str(tmp_path / "w"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (next((tmp_path / "out").glob("scale_cpu_*_smoke.md"))).read_text()
    assert "| synthetic-20k | 20,000 |" in md
    row = next(line for line in md.splitlines() if line.startswith("| validated_interactions |"))
    assert "timeout" not in row and "failed" not in row, row


def test_bench_ddp_scaling_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "ddp_scaling.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = next(tmp_path.glob("ddp_scaling_cpu_*_smoke.md")).read_text()
    assert "2 processes x 1 thread (DDP, gloo)" in md
