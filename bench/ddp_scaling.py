"""Data-parallel MF-BPR on CPU: 1 process vs 2 DDP processes (gloo), and what a step communicates.

A synthetic split of `--interactions` training pairs (uniform users and items, no validation) is
trained for `--epochs` epochs by rrec_core.training.distributed.train_distributed:
  1 process, 1 thread    the in-process reference (world_size=1), one core
  1 process, 2 threads   the same, two threads (on a machine whose cores other jobs use, threads that
                         wait for each other can make this far slower than one thread)
  2 processes x 1 thread DDP over gloo (the processes are spawned; their start-up is in "wall")
Epoch time is rank 0's training time for the epoch (the all-reduces included), median over epochs.
The two runs' final tables are compared (max |difference|) to show that both trained the same model.

Then, in 2 gloo processes, the communication of one step at the split's table sizes (median of
`--repeats`): the all-reduce of the dense gradients of both tables (what DDP sends with replicated
tables), and the sparse all-reduce of a batch's touched rows (what nn.Embedding(sparse=True) would send);
and one single-process step split into forward + backward (what data parallelism divides among the
ranks) and the dense Adam step over the whole tables (what every replica runs whole).

    .venv/bin/python bench/ddp_scaling.py [--interactions 1000000] [--epochs 2]
    .venv/bin/python bench/ddp_scaling.py --smoke --out /tmp/x   # tiny: proves it runs

Writes bench/results/ddp_scaling_cpu_<date>.md and .json (_smoke with --smoke).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from rrec_core.config import MFConfig  # noqa: E402
from rrec_core.data.split import Split  # noqa: E402
from rrec_core.training.distributed import free_port, train_distributed  # noqa: E402


def synthetic_split(n_pairs: int, n_users: int, n_items: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, n_users * n_items, int(n_pairs * 1.02)))[:n_pairs]
    rng.shuffle(keys)
    train = np.stack([keys // n_items, keys % n_items], 1).astype(np.int64)
    empty = np.zeros((0, 2), dtype=np.int64)
    return Split([str(u) for u in range(n_users)], [str(i) for i in range(n_items)], train, empty, empty)


def _comm_rank(rank: int, port: int, n_users: int, n_items: int, dim: int, batch: int, repeats: int,
               out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=600))
    g = torch.Generator().manual_seed(rank)
    dense = [torch.randn(n_users, dim), torch.randn(n_items, dim)]
    rows = [torch.randint(n_users, (batch,), generator=g), torch.randint(n_items, (2 * batch,), generator=g)]
    sparse = [torch.sparse_coo_tensor(r.unsqueeze(0), torch.randn(len(r), dim), (n, dim),
                                      check_invariants=True).coalesce()
              for r, n in zip(rows, (n_users, n_items))]
    times: dict[str, list[float]] = {"dense": [], "sparse": []}
    for _ in range(repeats + 2):  # 2 warm-up rounds
        for name, tensors in (("dense", dense), ("sparse", sparse)):
            dist.barrier()
            t0 = time.perf_counter()
            for t in tensors:
                dist.all_reduce(t.clone() if name == "sparse" else t)
            times[name].append(time.perf_counter() - t0)
    if rank == 0:
        med = {k: statistics.median(v[2:]) for k, v in times.items()}
        Path(out).write_text(json.dumps({
            "dense_ms": med["dense"] * 1e3, "sparse_ms": med["sparse"] * 1e3,
            "dense_mb": sum(t.numel() for t in dense) * 4 / 2**20,
            "sparse_mb": sum(t.values().numel() * 4 + t.indices().numel() * 8 for t in sparse) / 2**20}))
    dist.destroy_process_group()


def step_breakdown(n_users: int, n_items: int, dim: int, batch: int, repeats: int) -> dict[str, float]:
    """ms of one single-process, 1-thread MF-BPR step, split in forward + backward (at the full batch and
    at the half batch one of 2 ranks computes) and the dense Adam step (the whole tables, on every rank)."""
    from rrec_core.models import MFBPR

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MFBPR(n_users, n_items, dim)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def ms(f) -> float:
        for _ in range(3):
            f()
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        return statistics.median(t) * 1e3

    out = {}
    for b in (batch, batch // 2):
        u, p, n = torch.randint(n_users, (b,)), torch.randint(n_items, (b,)), torch.randint(n_items, (b,))

        def fwd_bwd():
            opt.zero_grad(set_to_none=True)
            model.bpr_loss(u, p, n).backward()
        out[f"fwd_bwd_{b}_ms"] = ms(fwd_bwd)
    out["adam_ms"] = ms(opt.step)
    torch.set_num_threads(threads)
    return out


def render(payload: dict) -> str:
    a, rows, comm, step = payload["args"], payload["runs"], payload["comm"], payload.get("step")
    load = payload["loadavg"]
    steps = -(-a["interactions"] // a["batch"])
    single = min((r for r in rows if r["world_size"] == 1), key=lambda r: r["epoch_s"])
    lines = [f"# DDP scaling, MF-BPR on CPU ({payload['date']}{', smoke' if a['smoke'] else ''})", "",
             f"{payload['machine']}, {payload['cores']} cores, torch {payload['torch']}; "
             f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (other jobs share the cores).",
             f"Split: {a['interactions']:,} training pairs, {a['users']:,} users x {a['items']:,} items, d = {a['dim']}, "
             f"batch {a['batch']} ({steps} steps per epoch), Adam lr 1e-3, {a['epochs']} epochs.", "",
             f"| run | s / epoch (median) | speed-up vs {single['run']} | wall s (incl. spawn) | last epoch loss |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['epoch_s']:.2f} | {single['epoch_s'] / r['epoch_s']:.2f}x | {r['wall_s']:.1f} | "
                     f"{r['loss_last']:.6f} |")
    lines += ["", f"Max |table difference| 1 process vs 2 DDP processes after {a['epochs']} epochs: "
              f"{payload['max_table_diff']:.1e}.", "",
              f"Communication of one step, 2 gloo processes (median of {a['repeats']}):", "",
              "| all-reduce | MB per rank | ms |", "|---|---:|---:|",
              f"| dense gradients of both tables (replicated DDP) | {comm['dense_mb']:.2f} | {comm['dense_ms']:.2f} |",
              f"| sparse rows of one batch (sparse=True embeddings) | {comm['sparse_mb']:.2f} | {comm['sparse_ms']:.2f} |",
              "", f"Per epoch: dense {comm['dense_ms'] * steps / 1e3:.2f} s, sparse {comm['sparse_ms'] * steps / 1e3:.2f} s "
              f"of communication ({steps} steps)."]
    if step:
        b = a["batch"]
        lines += ["", "One single-process step, 1 thread (median): what data parallelism divides and what it does not.", "",
                  "| part | ms |", "|---|---:|",
                  f"| zero_grad + forward + backward, batch {b} | {step[f'fwd_bwd_{b}_ms']:.2f} |",
                  f"| zero_grad + forward + backward, batch {b // 2} (one of 2 ranks) | {step[f'fwd_bwd_{b // 2}_ms']:.2f} |",
                  f"| Adam step over both tables (dense; every rank runs it whole) | {step['adam_ms']:.2f} |"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--interactions", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.interactions, args.users, args.items, args.epochs, args.repeats = 5000, 300, 200, 1, 3
    split = synthetic_split(args.interactions, args.users, args.items)
    cfg = MFConfig(embedding_dim=args.dim, batch_size=args.batch, epochs=args.epochs, device="cpu")
    cores = os.cpu_count() or 1
    rows, runs = [], {}
    for name, world, threads in (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
                                 ("2 processes x 1 thread (DDP, gloo)", 2, 1)):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        res = train_distributed(split, cfg, world_size=world, threads_per_rank=threads)
        wall = time.perf_counter() - t0
        epoch_s = statistics.median(h["train_seconds"] for h in res.history)
        runs[name] = res
        rows.append({"run": name, "world_size": world, "threads_per_process": threads, "epoch_s": epoch_s,
                     "wall_s": wall, "loss_last": res.history[-1]["loss"]})
        print(f"{name}: {epoch_s:.2f} s/epoch, {wall:.1f} s wall", flush=True)
    torch.set_num_threads(min(2, cores))
    ref, ddp = runs["1 process, 1 thread"].model, runs["2 processes x 1 thread (DDP, gloo)"].model
    max_diff = max(float((ref.state_dict()[k] - ddp.state_dict()[k]).abs().max())
                   for k in ("user_embedding.weight", "item_embedding.weight"))

    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out_json = str(Path(tmp) / "comm.json")
        mp.spawn(_comm_rank, args=(free_port(), args.users, args.items, args.dim, args.batch, args.repeats, out_json),
                 nprocs=2, join=True)
        comm = json.loads(Path(out_json).read_text())
    step = step_breakdown(args.users, args.items, args.dim, args.batch, args.repeats)
    date = dt.date.today().isoformat()
    payload = {"date": date, "machine": platform.processor() or platform.machine(), "cores": cores,
               "torch": torch.__version__, "args": vars(args), "runs": rows, "max_table_diff": max_diff,
               "comm": comm, "step": step, "loadavg": os.getloadavg()}
    md = render(payload)
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"ddp_scaling_cpu_{date}{'_smoke' if args.smoke else ''}"
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
