#!/usr/bin/env bash
# One lease of a GPU machine (see docs/ops.md, "GPU checks"): build the CUDA ops, run the CUDA
# tests, the ops benchmark and the adversarial-stage timing; logs and results under $OUT.
#   bench/gpu_session.sh build tests bench profile ncu stage (any subset, in this order)
# The GPU image has its own torch (no dagster/GX/DVC): the extension is built against it in a
# scratch copy (setup.py + csrc only, so the project's pins are not installed), then dropped into
# rrec_core/. Extra wheels (pydantic for the stage timing) travel in .whl/.
set -uo pipefail
OUT=${OUT:-/tmp/rrec-gpu-out}; mkdir -p "$OUT"
REPO=$(pwd)
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
step() { echo "=== $1 ($(date -u +%T))"; }

for what in "$@"; do
  case $what in
    build)
      step build
      src_hash=$(cat setup.py $(find csrc -type f | sort) | sha1sum | cut -c1-16)
      if [ "$(cat /tmp/rrec-build/hash 2>/dev/null)" = "$src_hash" ] && ls rrec_core/_C*.so >/dev/null 2>&1; then
        echo "already built from these sources ($src_hash)"; continue
      fi
      nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/build.log"
      $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/build.log"
      rm -rf /tmp/rrec-build && mkdir -p /tmp/rrec-build/rrec_core && cp -r setup.py csrc /tmp/rrec-build/
      (cd /tmp/rrec-build && time $PY setup.py build_ext --inplace) >>"$OUT/build.log" 2>&1 \
        || { tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1; }
      cp /tmp/rrec-build/rrec_core/_C*.so rrec_core/ && echo "$src_hash" > /tmp/rrec-build/hash
      grep -E "warning|error" "$OUT/build.log" | head -20
      $PY -c "import rrec_core.ops as o; print('backends', o.backends())" | tee -a "$OUT/build.log"
      ;;
    tests)
      step "CUDA tests"
      timeout 300 $PY -m pytest -m cuda tests/test_ops.py -q -p no:cacheprovider -n 8 >"$OUT/cuda_tests.log" 2>&1
      echo "pytest rc=$?"; tail -15 "$OUT/cuda_tests.log"
      ;;
    bench)
      step "ops benchmark"
      timeout 420 $PY bench/bench_ops.py --out "$OUT" 2>&1 | tee "$OUT/bench_ops.log" | grep -v "^\s*$" | tail -100
      ;;
    profile)
      step "profiler"
      timeout 200 $PY bench/profile_ops.py --out "$OUT" > "$OUT/profile.log" 2>&1; echo "profile rc=$?"
      grep -E "^## |Self CUDA time total|Self CPU time total" "$OUT/profile.log"
      ;;
    ncu)
      step "nsight compute"
      NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
      timeout 300 $NCU --clock-control none --kernel-name regex:rows_kernel --section SpeedOfLight \
        --section Occupancy --section LaunchStats $PY bench/ncu_ops.py > "$OUT/ncu.log" 2>&1
      echo "ncu rc=$?"; grep -E "rows_kernel|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Duration|Block Limit Registers|Waves Per SM" "$OUT/ncu.log" | sed -E 's/rrec::\(anonymous namespace\)::rows_kernel/rows_kernel/' | cut -c1-150
      ;;
    stage)
      step "adversarial stage timing"
      timeout 420 $PY bench/bench_adversarial_stage.py --out "$OUT" 2>&1 | tee "$OUT/stage.log" | tail -20
      ;;
    *) echo "unknown step $what"; exit 2 ;;
  esac
done
step done
