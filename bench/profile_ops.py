"""The profiler's word on where the training-step time goes (CUDA).

    python bench/profile_ops.py [--batch 4096] [--out DIR]

Profiles 20 steps each of BPR, naive APR and APR as rrec trains it (bench_ops.py's MF model and
steps), and prints the top entries by CUDA and by CPU time (the wall of a launch-bound step is CPU
time). Writes profile_<batch>.txt under --out.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ops as bo  # noqa: E402


def _table(prof, key: str, rows: int = 18) -> str:
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    dev = torch.device("cuda")
    b, n_users, n_items = args.batch, 100_000, 50_000
    sections = []
    m = bo.MF(n_users, n_items, 64, dev)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    u = torch.randint(0, n_users, (b,), device=dev)
    p = torch.randint(0, n_items, (b,), device=dev)
    q = torch.randint(0, n_items, (b,), device=dev)
    cases = [("bpr step", lambda: bo.bpr_step(m, opt, u, p, q)),
             ("naive APR step", lambda: bo.apr_naive_step(m, opt, u, p, q)),
             ("APR (rrec) step", lambda: bo.apr_rrec_step(m, opt, u, p, q))]
    for name, fn in cases:
        for _ in range(10):
            fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                fn()
            torch.cuda.synchronize()
        sections.append(f"## {name}, batch {b}, 20 calls\n\n### by CUDA time\n"
                        f"{_table(prof, 'self_cuda_time_total')}\n### by CPU time\n"
                        f"{_table(prof, 'self_cpu_time_total')}\n")
        print(sections[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile_{b}.txt").write_text("\n".join(sections))


if __name__ == "__main__":
    main()
