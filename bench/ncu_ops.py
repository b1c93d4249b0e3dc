"""Launch the rrec kernels whose benchmark rows missed a goal, once each, for Nsight Compute.

    ncu --clock-control none --kernel-name regex:rows_kernel --section SpeedOfLight \
        --section Occupancy --section LaunchStats python bench/ncu_ops.py

(bench/gpu_session.sh ncu does this.) Cases: 1M x 64 bf16 (fgsm l2, project linf, pgd l2) and
1M x 384 bf16 pgd l2, then 10M x 64 bf16 fgsm l2 as the at-bandwidth reference.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import rrec_core.ops as ops  # noqa: E402

torch.manual_seed(0)
for n, d in [(1_000_000, 64), (1_000_000, 384), (10_000_000, 64)]:
    g = torch.randn(n, d, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(n, d, device="cuda", dtype=torch.bfloat16) * 0.1
    if d == 64 and n == 1_000_000:
        ops.fgsm(g, 0.5, "l2"); ops.project(x, 0.5, "linf"); ops.pgd_step(x, g, 0.1, 0.5, "l2")
    elif d == 384:
        ops.pgd_step(x, g, 0.1, 0.5, "l2")
    else:
        ops.fgsm(g, 0.5, "l2")
    torch.cuda.synchronize()
    del g, x
