"""Benchmark of the rrec ops against eager PyTorch and torch.compile, side by side.

Same grid and method as ../shared/bench/anchor_kernels.py (the H100 anchors in DESIGN.md):
a copy-bandwidth floor (bytes read + written), then for each op and shape the median time
of eager PyTorch, torch.compile of the same function, and the rrec op; then a training step
(BPR, naive APR, and APR as rrec trains it).

    python bench/bench_ops.py                  # CUDA: full grid, fp32 and bf16
    python bench/bench_ops.py --device cpu     # reduced grid (includes 1M x 64 fp32)
    python bench/bench_ops.py --device cpu --no-compile
    python bench/bench_ops.py --device cpu --no-compile --smoke   # tiny: proves it runs

Writes bench/results/ops_<device>_<date>.{json,md}. Timing: CUDA events (median of 50
after 10 warm-up calls) on CUDA, torch.utils.benchmark blocked_autorange (median) on CPU.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
from pathlib import Path

import torch
import torch._dynamo
import torch.utils.benchmark as tb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
import rrec_core.ops as ops  # noqa: E402
from rrec_core.attacks import Attack, perturbations  # noqa: E402

EPS, ALPHA = 0.5, 0.1
CUDA_SHAPES = [(4096, 64), (65536, 64), (1_000_000, 64), (10_000_000, 64), (1_000_000, 384),
               (4_000_000, 128)]
CPU_SHAPES = [(4096, 64), (65536, 64), (1_000_000, 64)]


# ---- timing ---------------------------------------------------------------------------

MIN_RUN_S = 0.5  # per CPU figure; --smoke lowers it (the figures then mean nothing)


def time_ms(fn, device: torch.device) -> float:
    """Median milliseconds per call of fn()."""
    if device.type != "cuda":
        return tb.Timer("fn()", globals={"fn": fn}).blocked_autorange(min_run_time=MIN_RUN_S).median * 1e3
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(50):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth(device: torch.device) -> float:
    """GB/s of a device-to-device copy, bytes read + written (the floor's denominator)."""
    n = (512 if device.type == "cuda" else 64 if MIN_RUN_S >= 0.5 else 1) * 1024 * 1024  # 2 GiB / 256 MiB fp32
    x = torch.randn(n, device=device)
    y = torch.empty_like(x)
    ms = time_ms(lambda: y.copy_(x), device)
    return 2 * x.numel() * 4 / (ms / 1e3) / 1e9


# ---- eager PyTorch, as a user writes it (the anchor's definitions) --------------------

def fgsm_l2(g, eps):
    return eps * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)


def fgsm_inf(g, eps):
    return eps * g.sign()


def proj_inf(d, eps):
    return d.clamp(-eps, eps)


def pgd_inf(d, g, eps, alpha):
    return (d + alpha * g.sign()).clamp(-eps, eps)


def proj_l2(d, eps):
    n = d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return d * (eps / n).clamp(max=1.0)


def pgd_l2(d, g, eps, alpha):
    d = d + alpha * g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    n = d.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return d * (eps / n).clamp(max=1.0)


# ---- one benchmark row ----------------------------------------------------------------

class Runner:
    def __init__(self, device: torch.device, compile_: bool, bandwidth: float):
        self.device, self.compile, self.bw = device, compile_, bandwidth
        self.compiled = {}
        self.rows: list[dict] = []

    def _compiled(self, fn):
        # one static-shape graph per (function, shape, dtype): without a higher limit dynamo
        # stops recompiling after 8 and silently runs eager, and the column would lie
        if fn not in self.compiled:
            self.compiled[fn] = torch.compile(fn, dynamic=False)
        return self.compiled[fn]

    def measure(self, op, shape, dtype, nbytes, eager, ours, args=()):
        floor = nbytes / (self.bw * 1e9) * 1e3
        t_e = time_ms(lambda: eager(*args), self.device)
        t_c = time_ms(lambda: self._compiled(eager)(*args), self.device) if self.compile else None
        t_o = time_ms(ours, self.device)
        row = dict(op=op, rows=shape[0], dim=shape[1], dtype=str(dtype).removeprefix("torch."),
                   floor_ms=floor, eager_ms=t_e, compiled_ms=t_c, rrec_ms=t_o,
                   eager_bw=floor / t_e, compiled_bw=floor / t_c if t_c else None,
                   rrec_bw=floor / t_o, speedup_vs_eager=t_e / t_o,
                   speedup_vs_compiled=t_c / t_o if t_c else None)
        self.rows.append(row)
        comp = f"{t_c:9.4f}" if t_c else "      n/a"
        print(f"{op:11s} {shape[0]:>9d}x{shape[1]:<4d} {row['dtype']:8s} floor {floor:8.4f}  "
              f"eager {t_e:9.4f}  compiled {comp}  rrec {t_o:9.4f} ms  "
              f"rrec {100 * row['rrec_bw']:5.1f}% of bw  x{row['speedup_vs_eager']:.2f} vs eager",
              flush=True)


def bench_kernels(r: Runner, shapes, dtypes):
    dev = r.device
    for dtype in dtypes:
        es = torch.empty(0, dtype=dtype).element_size()
        for n, d in shapes:
            g = torch.randn(n, d, device=dev, dtype=dtype)
            dl = torch.randn(n, d, device=dev, dtype=dtype) * 0.1
            dl2 = dl.clone()
            two, three = 2 * n * d * es, 3 * n * d * es
            r.measure("fgsm_l2", (n, d), dtype, two, fgsm_l2,
                      lambda: ops.fgsm(g, EPS, "l2"), args=(g, EPS))
            r.measure("fgsm_inf", (n, d), dtype, two, fgsm_inf,
                      lambda: ops.fgsm(g, EPS, "linf"), args=(g, EPS))
            r.measure("proj_l2", (n, d), dtype, two, proj_l2,
                      lambda: ops.project(dl, EPS, "l2"), args=(dl, EPS))
            r.measure("proj_inf", (n, d), dtype, two, proj_inf,
                      lambda: ops.project(dl, EPS, "linf"), args=(dl, EPS))
            r.measure("pgd_inf", (n, d), dtype, three, pgd_inf,
                      lambda: ops.pgd_step(dl, g, ALPHA, EPS, "linf"), args=(dl, g, EPS, ALPHA))
            r.measure("pgd_l2", (n, d), dtype, three, pgd_l2,
                      lambda: ops.pgd_step(dl, g, ALPHA, EPS, "l2"), args=(dl, g, EPS, ALPHA))
            # in place: same bytes (read d, g; write d), no allocation of the result
            r.measure("pgd_l2_", (n, d), dtype, three, pgd_l2,
                      lambda: ops.pgd_step_(dl2, g, ALPHA, EPS, "l2"), args=(dl, g, EPS, ALPHA))
            del g, dl, dl2


# ---- training step: BPR vs naive APR vs APR as rrec trains it ---------------------------

class MF(torch.nn.Module):
    """Matrix factorisation scored by dot products, trained with the BPR loss."""

    def __init__(self, n_users: int, n_items: int, dim: int, device):
        super().__init__()
        self.users = torch.nn.Embedding(n_users, dim, device=device)
        self.items = torch.nn.Embedding(n_items, dim, device=device)
        torch.nn.init.normal_(self.users.weight, std=0.1)
        torch.nn.init.normal_(self.items.weight, std=0.1)


def bpr(eu, ep, eq):
    return -torch.nn.functional.logsigmoid((eu * ep).sum(1) - (eu * eq).sum(1)).mean()


def bpr_step(m, opt, u, p, q):
    opt.zero_grad(set_to_none=True)
    bpr(m.users(u), m.items(p), m.items(q)).backward()
    opt.step()


def apr_naive_step(m, opt, u, p, q, eps=EPS, lam=1.0):
    """As a user writes APR in PyTorch: FGSM per batch occurrence, second forward."""
    opt.zero_grad(set_to_none=True)
    eu, ep, eq = m.users(u), m.items(p), m.items(q)
    loss = bpr(eu, ep, eq)
    gu, gp, gq = torch.autograd.grad(loss, (eu, ep, eq), retain_graph=True)
    du, dp, dq = (fgsm_l2(g.detach(), eps) for g in (gu, gp, gq))
    (loss + lam * bpr(eu + du, ep + dp, eq + dq)).backward()
    opt.step()


def apr_rrec_step(m, opt, u, p, q, eps=EPS, lam=1.0):
    """APR as rrec trains it (rrec_core.training.adversarial.AdversarialLoss, method "apr"): the
    batch's unique rows, their closed-form summed BPR gradients and one L2 step of ops.pgd_step
    (rrec_core.attacks.perturbations: a row that repeats moves once, as in a whole-table
    perturbation), batch rows gathered with index_select. Same objective as apr_naive_step."""
    opt.zero_grad(set_to_none=True)
    uu, u_idx = torch.unique(u, return_inverse=True)
    ii, inv = torch.unique(torch.cat([p, q]), return_inverse=True)
    p_idx, q_idx = inv[: len(p)], inv[len(p):]
    U, V = m.users(uu), m.items(ii)
    loss = bpr(U.index_select(0, u_idx), V.index_select(0, p_idx), V.index_select(0, q_idx))
    dU, dV = perturbations(U, V, u_idx, p_idx, q_idx, Attack(eps=eps, steps=1, norm="l2"))
    Ua, Va = U + dU, V + dV
    adv = bpr(Ua.index_select(0, u_idx), Va.index_select(0, p_idx), Va.index_select(0, q_idx))
    (loss + lam * adv).backward()
    opt.step()


def bench_training(device: torch.device, batches, n_users=100_000, n_items=50_000, dim=64):
    rows = []
    for b in batches:
        m = MF(n_users, n_items, dim, device)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        u = torch.randint(0, n_users, (b,), device=device)
        p = torch.randint(0, n_items, (b,), device=device)
        q = torch.randint(0, n_items, (b,), device=device)
        t = {name: time_ms(lambda: step(m, opt, u, p, q), device)
             for name, step in [("bpr", bpr_step), ("apr_naive", apr_naive_step),
                                ("apr_rrec", apr_rrec_step)]}
        row = dict(op="train_step", users=n_users, items=n_items, dim=dim, batch=b,
                   bpr_ms=t["bpr"], apr_naive_ms=t["apr_naive"], apr_rrec_ms=t["apr_rrec"],
                   naive_ratio=t["apr_naive"] / t["bpr"], rrec_ratio=t["apr_rrec"] / t["bpr"])
        rows.append(row)
        print(f"train step batch {b:>6d}: BPR {t['bpr']:.3f} ms  naive APR {t['apr_naive']:.3f} ms "
              f"(x{row['naive_ratio']:.2f})  APR (rrec) {t['apr_rrec']:.3f} ms "
              f"(x{row['rrec_ratio']:.2f})", flush=True)
        del m, opt
    return rows


# ---- report ---------------------------------------------------------------------------

def _fmt(x, spec=".4f"):
    return "n/a" if x is None else format(x, spec)


def markdown(meta: dict, kernel_rows: list[dict], train_rows: list[dict]) -> str:
    lines = [f"# rrec ops benchmark — {meta['device_name']} ({meta['date']})", "",
             f"torch {meta['torch']}, backends {meta['backends']}, copy bandwidth "
             f"{meta['copy_GBps']:.1f} GB/s (read + write), {meta['timing']}.", ""]
    if meta.get("note"):
        lines += [meta["note"], ""]
    lines += ["| op | rows × dim | dtype | floor ms | eager ms | compiled ms | rrec ms | "
              "eager %bw | compiled %bw | rrec %bw | rrec vs eager | rrec vs compiled |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in kernel_rows:
        pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        lines.append(
            f"| {r['op']} | {r['rows']}×{r['dim']} | {r['dtype']} | {_fmt(r['floor_ms'])} | "
            f"{_fmt(r['eager_ms'])} | {_fmt(r['compiled_ms'])} | {_fmt(r['rrec_ms'])} | "
            f"{pct(r['eager_bw'])} | {pct(r['compiled_bw'])} | {pct(r['rrec_bw'])} | "
            f"×{r['speedup_vs_eager']:.2f} | {_fmt(r['speedup_vs_compiled'], '.2f')} |")
    if train_rows:
        lines += ["", "Training step (MF, Adam; naive APR = per-occurrence FGSM; APR (rrec) = as "
                  "rrec trains it: unique rows, summed gradients, ops.pgd_step, index_select):", "",
                  "| users | items | dim | batch | BPR ms | naive APR ms | APR (rrec) ms | "
                  "naive / BPR | rrec / BPR |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in train_rows:
            lines.append(f"| {r['users']} | {r['items']} | {r['dim']} | {r['batch']} | "
                         f"{r['bpr_ms']:.3f} | {r['apr_naive_ms']:.3f} | {r['apr_rrec_ms']:.3f} | "
                         f"{r['naive_ratio']:.2f} | {r['rrec_ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--smoke", action="store_true",
                    help="tiny grid, short timings: proves the script runs (the test suite uses it), measures nothing")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    global MIN_RUN_S
    if args.smoke:
        MIN_RUN_S = 0.01
    if not ops.backends().get(device.type):
        sys.exit(f"rrec ops have no compiled {device.type} kernels: build the extension first")
    cuda = device.type == "cuda"
    name = torch.cuda.get_device_name(device) if cuda else _cpu_name()
    bw = copy_bandwidth(device)
    print(f"{name}: copy bandwidth {bw:.1f} GB/s (read + write)", flush=True)

    for knob in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, knob):
            setattr(torch._dynamo.config, knob, 1024)
    runner = Runner(device, not args.no_compile, bw)
    if args.smoke:
        bench_kernels(runner, [(256, 64)], [torch.float32])
        train = bench_training(device, (512,), n_users=2_000, n_items=1_000)
    elif cuda:
        bench_kernels(runner, CUDA_SHAPES, [torch.float32, torch.bfloat16])
        train = bench_training(device, (4096, 65536))
    else:
        bench_kernels(runner, CPU_SHAPES, [torch.float32])
        bench_kernels(runner, [(1_000_000, 64)], [torch.bfloat16])
        train = bench_training(device, (4096,))

    today = dt.date.today().isoformat()
    meta = dict(device=device.type, device_name=name, date=today, torch=torch.__version__,
                backends=ops.backends(), copy_GBps=bw, threads=torch.get_num_threads(),
                timing="CUDA events, median of 50" if cuda else
                "torch.utils.benchmark blocked_autorange median",
                load_average=os.getloadavg() if hasattr(os, "getloadavg") else None)
    if not cuda:
        meta["note"] = (f"{torch.get_num_threads()} threads; load average at the end "
                        f"{meta['load_average'][0]:.2f} (other jobs share these cores).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ops_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}_{today}"
    (out / f"{stem}.json").write_text(json.dumps(
        dict(meta=meta, kernels=runner.rows, train=train), indent=1))
    (out / f"{stem}.md").write_text(markdown(meta, runner.rows, train))
    print(f"wrote {out / stem}.json and .md")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


if __name__ == "__main__":
    main()
