"""APR training step on CPU: BPR, APR with advanced-indexing gathers, APR as rrec trains it.

Per configuration (table sizes x batch), ms per training step (zero_grad, loss, backward,
Adam step on an MFBPR model), median over repeats after warm-up, variants interleaved:

  (a) bpr        clean BPR: model.bpr_loss (embedding lookup, BPR, backward, Adam)
  (b) apr_index  APR the way rrec trained it before 2026-12-02, written out here: the batch's
                 unique rows, attacks.perturbations (closed-form summed gradients, ops.pgd_step,
                 one L2 step), batch rows gathered by advanced indexing U[u_idx] (backward:
                 index_put with accumulate)
  (c) apr_rrec   APR as rrec trains it now: rrec_core.training.adversarial.AdversarialLoss
                 (method="apr", eps=0.5, clean weight 0.5, no user weights) — the same, with
                 the batch rows gathered by index_select (backward: index_add)

Before timing, (b) and (c) are checked on the same model and batch: total loss, adversarial
loss (clean weight 0), and the gradients of both tables after backward; the script exits with
an error if they differ by more than float32 summation order allows.

The earlier version of this script also timed the fused sparse-row op `ops.perturb_rows`
(results/apr_rows_cpu_2026-12-02.md); that op was removed after that measurement (docs/ops.md).

    .venv/bin/python bench/bench_apr_rows.py [--repeats 15] [--warmup 5]
    .venv/bin/python bench/bench_apr_rows.py --smoke --out /tmp/x   # tiny: proves it runs

Writes bench/results/apr_step_cpu_<date>.md (apr_step_cpu_<date>_smoke.md with --smoke).
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
import rrec_core.ops as ops  # noqa: E402
from rrec_core.attacks import Attack, bpr_loss, perturbations  # noqa: E402
from rrec_core.config import AdversarialConfig  # noqa: E402
from rrec_core.models import MFBPR  # noqa: E402
from rrec_core.training.adversarial import AdversarialLoss  # noqa: E402

EPS, CLEAN_WEIGHT = 0.5, 0.5  # AdversarialConfig defaults: eps 0.5, clean_weight 0.5
SIZES = [(943, 1682, 64), (100_000, 50_000, 64)]
BATCHES = [2048, 4096]
SMOKE_SIZES, SMOKE_BATCHES = [(50, 80, 16)], [64]
# (b) vs (c): the forward values are the same gathers of the same rows; only the order in which
# the backward sums repeated rows differs (index_put vs index_add), so float32 rounding apart
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 1e-6, 1e-4, 1e-7


# ---- (b) advanced-indexing gathers ----------------------------------------------------------

def index_parts(model, users, pos, neg, attack):
    """(clean, adv) of APR with the batch rows gathered as U[u_idx] (the pre-2026-12-02 path)."""
    uu, u_idx = torch.unique(users, return_inverse=True)
    ii, inv = torch.unique(torch.cat([pos, neg]), return_inverse=True)
    p_idx, n_idx = inv[: len(pos)], inv[len(pos):]
    U, V = model.user_vectors(uu), model.item_vectors(ii)
    clean = bpr_loss(U[u_idx], V[p_idx], V[n_idx])
    dU, dV = perturbations(U, V, u_idx, p_idx, n_idx, attack)
    U_adv, V_adv = U + dU, V + dV
    return clean, bpr_loss(U_adv[u_idx], V_adv[p_idx], V_adv[n_idx])


def make_index_loss(clean_weight: float = CLEAN_WEIGHT):
    attack = Attack(eps=EPS, steps=1, norm="l2")

    def loss(model, users, pos, neg):
        clean, adv = index_parts(model, users, pos, neg, attack)
        return clean_weight * clean + (1 - clean_weight) * adv
    return loss


# ---- (c) the package's loss -----------------------------------------------------------------

def make_rrec_loss(clean_weight: float = CLEAN_WEIGHT) -> AdversarialLoss:
    loss = AdversarialLoss(AdversarialConfig(method="apr", eps=EPS, clean_weight=clean_weight))
    assert loss.attack == Attack(eps=EPS, steps=1, norm="l2"), loss.attack
    return loss


def _default_clean_weight() -> float:
    w = AdversarialConfig(method="apr").clean_weight
    assert w == CLEAN_WEIGHT and AdversarialConfig(method="apr").eps == EPS, \
        "AdversarialConfig defaults changed: update EPS / CLEAN_WEIGHT"
    return w


# ---- check and timing ----------------------------------------------------------------------

def check(model, batch) -> dict:
    """(b) against (c) on one model and batch; raises if they differ beyond float32 rounding."""
    users, pos, neg = batch
    out = {}
    with torch.no_grad():
        adv_b = make_index_loss(0.0)(model, users, pos, neg).item()
        adv_c = make_rrec_loss(0.0)(model, users, pos, neg).item()
    out["adv_b"], out["adv_c"], out["adv_abs"] = adv_b, adv_c, abs(adv_b - adv_c)
    grads = {}
    for name, fn in [("b", make_index_loss()), ("c", make_rrec_loss())]:
        m = copy.deepcopy(model)
        loss = fn(m, users, pos, neg)
        loss.backward()
        grads[name] = (loss.item(), m.user_embedding.weight.grad, m.item_embedding.weight.grad)
    out["loss_b"], out["loss_c"] = grads["b"][0], grads["c"][0]
    out["loss_abs"] = abs(grads["b"][0] - grads["c"][0])
    out["grad_rel"] = max(
        float((grads["b"][k] - grads["c"][k]).abs().max() / grads["b"][k].abs().max().clamp_min(1e-30))
        for k in (1, 2))
    out["grad_close"] = all(torch.allclose(grads["b"][k], grads["c"][k], rtol=GRAD_RTOL, atol=GRAD_ATOL)
                            for k in (1, 2))
    # how much the summed (per-unique-row) perturbation differs from a per-occurrence one
    out["uniq_users"] = int(torch.unique(users).numel())
    out["uniq_items"] = int(torch.unique(torch.cat([pos, neg])).numel())
    bad = [f"{what} differs: {b!r} vs {c!r}" for what, b, c in
           [("total loss", out["loss_b"], out["loss_c"]), ("adversarial loss", adv_b, adv_c)]
           if abs(b - c) > LOSS_RTOL * max(abs(b), abs(c), 1e-30)]
    if not out["grad_close"]:
        bad.append(f"table gradients differ (max rel {out['grad_rel']:.1e})")
    if bad:
        raise AssertionError("(b) and (c) disagree: " + "; ".join(bad))
    return out


def step_fn(model, opt, loss_fn, batches):
    state = {"i": 0}

    def step():
        users, pos, neg = batches[state["i"] % len(batches)]
        state["i"] += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, users, pos, neg)
        loss.backward()
        opt.step()
    return step


def _busy_s() -> float:
    """CPU seconds all processes have been busy (from /proc/stat), or nan."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _own_s() -> float:
    t = os.times()
    return t.user + t.system


def wait_quiet(quiet: float, max_wait: float) -> float:
    """Wait (at most max_wait s) until other processes use < quiet cores over 2 s; returns
    the seconds waited."""
    t_start = time.perf_counter()
    while time.perf_counter() - t_start < max_wait:
        b0, t0 = _busy_s(), time.perf_counter()
        time.sleep(2)
        if not (_busy_s() - b0) / (time.perf_counter() - t0) >= quiet:  # nan: cannot tell
            break
    return time.perf_counter() - t_start


VARIANTS = ("bpr", "apr_index", "apr_rrec")


def bench_config(n_users, n_items, dim, batch, warmup, repeats, block_s=0.03) -> dict:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2020 + batch)  # the same batches on every retry
    base = MFBPR(n_users, n_items, dim)
    batches = [(torch.randint(0, n_users, (batch,), generator=gen),
                torch.randint(0, n_items, (batch,), generator=gen),
                torch.randint(0, n_items, (batch,), generator=gen)) for _ in range(4)]
    res = check(base, batches[0])

    losses = {"bpr": lambda m, u, p, n: m.bpr_loss(u, p, n), "apr_index": make_index_loss(),
              "apr_rrec": make_rrec_loss()}
    steps = {}
    for name in VARIANTS:
        m = copy.deepcopy(base)
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        steps[name] = step_fn(m, opt, losses[name], batches)
    for st in steps.values():  # warm-up (allocator, Adam state, thread pool)
        for _ in range(warmup):
            st()
    # steps per timed block: >= block_s of work, so timer resolution and jitter are small
    probe = []
    for _ in range(5):
        t0 = time.perf_counter()
        steps["bpr"]()
        probe.append(time.perf_counter() - t0)
    per_block = max(1, int(block_s / max(statistics.median(probe), 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in steps}
    busy0, own0, wall0 = _busy_s(), _own_s(), time.perf_counter()
    for _ in range(repeats):  # interleaved: drift hits every variant alike
        for name, st in steps.items():
            t0 = time.perf_counter()
            for _ in range(per_block):
                st()
            times[name].append((time.perf_counter() - t0) / per_block * 1e3)
    # other processes' CPU during the timed part, in cores (0 = quiet machine)
    res["foreign_cores"] = max(0.0, ((_busy_s() - busy0) - (_own_s() - own0))
                               / (time.perf_counter() - wall0))
    for name, ts in times.items():
        res[f"{name}_ms"] = statistics.median(ts)
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        res[f"{name}_iqr"] = (q[2] - q[0]) / statistics.median(ts)
    res.update(users=n_users, items=n_items, dim=dim, batch=batch, per_block=per_block)
    return res


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def markdown(meta: dict, rows: list[dict]) -> str:
    title = "APR step: BPR, advanced-indexing gathers, as rrec trains it"
    lines = [f"# {title} — {meta['device']} ({meta['date']})", ""]
    if meta["smoke"]:
        lines += ["**--smoke run: tiny sizes, one repeat; the figures mean nothing.**", ""]
    lines += [f"torch {meta['torch']}, {meta['threads']} threads, rrec backends "
              f"{meta['backends']}. ms per training step (MFBPR, Adam lr 1e-3, zero_grad + loss + "
              f"backward + step), median of {meta['repeats']} interleaved repeats after "
              f"{meta['warmup']} warm-up steps per variant; load average before/after "
              f"{meta['load_before']:.2f}/{meta['load_after']:.2f}; max IQR/median over all cells "
              f"{meta['max_iqr']:.1%}.", "",
              "| users × items × dim | batch | (a) BPR | (b) APR, U[u_idx] gathers | (c) APR, rrec "
              "AdversarialLoss | (b)/(a) | (c)/(a) | (c)/(b) | \\|L(b)−L(c)\\| | "
              "\\|L_adv(b)−L_adv(c)\\| | max rel grad diff | unique users / items | other CPU load |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['users']} × {r['items']} × {r['dim']} | {r['batch']} | {r['bpr_ms']:.2f} | "
            f"{r['apr_index_ms']:.2f} | {r['apr_rrec_ms']:.2f} | "
            f"{r['apr_index_ms'] / r['bpr_ms']:.2f} | {r['apr_rrec_ms'] / r['bpr_ms']:.2f} | "
            f"{r['apr_rrec_ms'] / r['apr_index_ms']:.2f} | {r['loss_abs']:.1e} | "
            f"{r['adv_abs']:.1e} | {r['grad_rel']:.1e} | "
            f"{r['uniq_users']} / {r['uniq_items']} | {r['foreign_cores']:.2f} |")
    lines += ["", "(b) and (c) are checked on the same model and batch before timing: total loss, "
              "adversarial loss (clean weight 0) and both tables' gradients after backward (the "
              "run stops if they differ beyond float32 rounding). Both perturb each unique table "
              "row by the FGSM of its gradient summed over its occurrences (positives and "
              "negatives of the item table together); they differ only in how the batch rows are "
              "gathered: U[u_idx] (backward: index_put with accumulate, slow on CPU) vs "
              "index_select (backward: index_add). Other CPU load: cores used by other processes "
              "while the cell was timed (/proc/stat minus this process; 0 = quiet)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-wait", type=float, default=30,
                    help="seconds to wait before a cell for other processes to go quiet")
    ap.add_argument("--tries", type=int, default=2,
                    help="times a cell at most while other processes use >= --quiet cores")
    ap.add_argument("--quiet", type=float, default=0.25)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, 1 repeat, no waiting: proves the script runs (the test suite "
                         "uses it), measures nothing")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    sizes, batches, block_s = SIZES, BATCHES, 0.03
    if args.smoke:
        sizes, batches, block_s = SMOKE_SIZES, SMOKE_BATCHES, 0.0
        args.repeats, args.warmup, args.max_wait, args.tries = 1, 1, 0.0, 1
    torch.set_num_threads(2)
    if not ops.backends().get("cpu"):
        sys.exit("rrec ops have no compiled CPU kernels: build the extension first")
    _default_clean_weight()
    today = dt.date.today().isoformat()
    now = dt.datetime.now().isoformat(timespec="seconds")
    device = f"{cpu_name()} ({os.cpu_count()} cores)"
    load_before = os.getloadavg()[0]
    print(f"device: {device}; torch {torch.__version__}, {torch.get_num_threads()} threads; {now}",
          flush=True)
    rows = []
    t_all = time.perf_counter()
    for n_users, n_items, dim in sizes:
        for b in batches:
            r: dict | None = None
            for attempt in range(args.tries):  # a cell timed while others ran is retimed
                waited = wait_quiet(args.quiet, args.max_wait)
                if waited > 3:
                    print(f"  (waited {waited:.0f} s for other processes to finish)")
                t = bench_config(n_users, n_items, dim, b, args.warmup, args.repeats, block_s)
                if r is None or t["foreign_cores"] < r["foreign_cores"]:
                    r = t
                if r["foreign_cores"] < args.quiet:
                    break
                print(f"  (other processes used {t['foreign_cores']:.2f} cores: retiming)")
            assert r is not None
            r["tries"] = attempt + 1
            rows.append(r)
            print(f"{n_users}x{n_items}x{dim} B={b}: bpr {r['bpr_ms']:.2f}  apr_index "
                  f"{r['apr_index_ms']:.2f}  apr_rrec {r['apr_rrec_ms']:.2f} ms  | L b={r['loss_b']:.7f} "
                  f"c={r['loss_c']:.7f} |d|={r['loss_abs']:.1e}  L_adv |d|={r['adv_abs']:.1e}  "
                  f"grad rel {r['grad_rel']:.1e}  uniq u/i {r['uniq_users']}/{r['uniq_items']}  "
                  f"(block {r['per_block']}, other load {r['foreign_cores']:.2f} cores, "
                  f"IQR/med c {r['apr_rrec_iqr']:.0%})", flush=True)
    meta = dict(device=device, date=now, torch=torch.__version__, threads=torch.get_num_threads(),
                backends=ops.backends(), repeats=args.repeats, warmup=args.warmup,
                load_before=load_before, load_after=os.getloadavg()[0], smoke=args.smoke,
                max_iqr=max(r[f"{k}_iqr"] for r in rows for k in VARIANTS))
    md = markdown(meta, rows)
    print()
    print(md)
    print(f"total {time.perf_counter() - t_all:.0f} s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"apr_step_cpu_{today}{'_smoke' if args.smoke else ''}.md"
    path.write_text(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
