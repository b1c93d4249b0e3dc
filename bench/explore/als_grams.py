"""The implicit-ALS surrogate's per-row Gram matrices: three-operand einsum vs one GEMM (CPU).

The gradient and promotion-GAN poisoning attacks retrain the surrogate at every step and differentiate
through it; ImplicitALS._solve's sum_j W_rj E_j E_j^T was an einsum("rj,jd,je->rde"), which torch does not
turn into a GEMM. Since 2026-12-07 (night) it is W @ outer(E_j, E_j) flattened to [m, d*d]. Same values.

    .venv/bin/python bench/explore/als_grams.py
"""
import time

import torch


def einsum_grams(W, E):
    return torch.cat([torch.einsum("rj,jd,je->rde", W[s:s + 256], E, E) for s in range(0, W.shape[0], 256)])


def gemm_grams(W, E):
    return (W @ (E[:, :, None] * E[:, None, :]).reshape(E.shape[0], -1)).reshape(W.shape[0], E.shape[1], -1)


def timed(f, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t0) / reps * 1e3


def main(r=971, m=1682, d=32):
    gen = torch.Generator().manual_seed(0)
    W = (torch.rand(r, m, generator=gen) < 0.06).float()
    E = torch.randn(m, d, generator=gen)
    a, b = einsum_grams(W, E), gemm_grams(W, E)
    print(f"ML-100K shape: {r} rows x {m} items, d={d}, threads={torch.get_num_threads()}; "
          f"max rel. diff {((a - b).abs().max() / a.abs().max()).item():.1e}")
    Wg, Eg = W.clone().requires_grad_(True), E.clone().requires_grad_(True)
    print(f"{'grams':8} {'forward ms':>11} {'fwd+bwd ms':>11}")
    for name, f in (("einsum", einsum_grams), ("gemm", gemm_grams)):
        fwd = timed(lambda: f(W, E), 5)
        both = timed(lambda: f(Wg, Eg).sum().backward(), 3)
        print(f"{name:8} {fwd:11.1f} {both:11.1f}")


if __name__ == "__main__":
    main()
