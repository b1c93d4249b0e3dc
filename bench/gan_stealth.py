"""The GAN's measured tables in docs/gan.md ("Measured on ML-100K"), in one run.

Setup (as docs/gan.md states it): every interaction of data/ml-100k (943 users x 1682 items), default
`GanConfig` with seed s, 5 targets drawn by `select_targets` with seed s, 3% fake users (28), `screen_users`
with `ScreenConfig()` defaults scored by `detection_metrics`; the heuristic attacks (`inject_attack`) use the
same targets and seed. GAN seeds 1, 2, 3.

  1. training log     `train_gan(implicit data, GanConfig(seed=s))`: the GAN rows of `result.log` of seed 1
                      (every epoch), the last epoch of every seed, calibration TV before/after, train time
  2. fresh critic     a new classifier, MLP n_items -> 128 -> 1 (ReLU), BCE, Adam lr 1e-3, 400 steps of 256
                      profiles, trained on 70% of the users (their real profiles against one fake per user)
                      and scored on the other 30% (283 real, 283 fake): held-out AUC. One fake per user, at
                      that user's own length ("template length"): uniform sampling without replacement
                      (random-attack fillers), sampling proportional to popularity without replacement
                      (bandwagon fillers), or the GAN's draw from that user's template (`gan._draw`, as in
                      training). Every row for GAN seeds 1-3 (the critic's split, draws and init use the same
                      seed); GAN variants: default, epochs=0, epochs=20, hidden=256, calibrate_rounds=0.
  3. stealth          `stealth_stats(real, injected)` (tv) and with `exclude_items=targets` (tv_no_targets),
                      lengths; "real-28": 28 real users drawn at random against all users, the mean of 20 draws
                      (rng seed s) per seed; means over seeds 1-3. Mean `degsim` of the fakes (implicit data) and of the real users (clean data).
  4. screen at 3%     GAN, bandwagon, random, with and without the rating column (GAN rows carry the maximum
                      rating): precision, recall, targets found, share of the fakes in the anomaly pool (the
                      ceil(10%) most anomalous users, as `screen_users` builds it).

    .venv/bin/python bench/gan_stealth.py                       # ~2-3 min on 2 quiet cores
    .venv/bin/python bench/gan_stealth.py --smoke --out /tmp/x  # synthetic 120 x 150 table, tiny GAN, seconds

Every profile has the mean real length (`profile_lengths="mean"`), as when the committed tables were
measured; the library's default now draws lengths from the real distribution.

Writes bench/results/gan_stealth_<date>.md (+ .json with the logs and every number); `--smoke`: *_smoke.*.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout
from rrec_core.config import GanConfig, ScreenConfig, load_params  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.poisoning import (  # noqa: E402
    detection_metrics,
    gan_attack,
    inject_attack,
    screen_users,
    select_targets,
    stealth_stats,
    train_gan,
)
from rrec_core.poisoning.gan import _draw  # noqa: E402  (the training-time draw, for the fresh critic)

SEEDS = (1, 2, 3)
FAKE_RATIO = 0.03
N_TARGETS = 5
VARIANTS = {  # fresh-critic GAN variants beyond the default
    "GAN, warm start only (`epochs=0`)": {"epochs": 0},
    "GAN, 20 epochs": {"epochs": 20},
    "GAN, hidden 256": {"hidden": 256},
    "GAN, default without calibration": {"calibrate_rounds": 0},
}
FLOOR_DRAWS = 20
CRITIC = {"hidden": 128, "steps": 400, "batch": 256, "lr": 1e-3, "train_fraction": 0.7}


# ---- shared bench helpers (each bench script is standalone) ---------------------------------------

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}{' (uncommitted changes in the tree)' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_meta(args, argv) -> dict:
    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{cpu_name()} ({os.cpu_count()} cores)",
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/gan_stealth.py", *argv]),
            "commit": git_state(), "load_before": os.getloadavg()[0], "smoke": bool(args.smoke)}


def header(title: str, meta: dict) -> list[str]:
    lines = [f"# {title} ({meta['date'][:10]})", ""]
    if meta["smoke"]:
        lines += ["**--smoke run: a tiny synthetic table and GAN; the figures mean nothing.**", ""]
    lines += [f"- date: {meta['date']}", f"- machine: {meta['machine']}",
              f"- python {meta['python']}, torch {meta['torch']}, {meta['threads']} threads",
              f"- command: `{meta['command']}`", f"- code: commit {meta['commit']}",
              f"- wall time: {meta['seconds']:.0f} s; load average before/after: "
              f"{meta['load_before']:.2f}/{meta['load_after']:.2f}", ""]
    return lines


# ---- data ----------------------------------------------------------------------------------------

def synthetic(n_users=120, n_items=150, seed=0) -> pd.DataFrame:
    """Zipf popularity, two taste halves, 15-30 items per user, ratings 1-5 (the smoke run's data)."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_items + 1)
    half = np.arange(n_items) % 2
    users, items = [], []
    for u in range(n_users):
        p = w * np.where(half == u % 2, 3.0, 1.0)
        chosen = rng.choice(n_items, rng.integers(15, 31), replace=False, p=p / p.sum())
        users += [f"u{u}"] * len(chosen)
        items += [f"i{i}" for i in chosen]
    return pd.DataFrame({"user_id": users, "item_id": items,
                         "rating": rng.integers(1, 6, len(users)).astype(np.float64),
                         "timestamp": np.arange(len(users), dtype=np.int64)})


def matrix(inter: pd.DataFrame, item_ids: list[str]) -> tuple[torch.Tensor, list[str]]:
    """Dense binary [n_users, n_items] profiles with columns in `item_ids` order (the GAN's)."""
    d = inter[["user_id", "item_id"]].astype(str).drop_duplicates()
    uc = pd.Categorical(d["user_id"])
    cols = pd.Index(item_ids).get_indexer(d["item_id"])
    X = torch.zeros(len(uc.categories), len(item_ids))
    X[torch.as_tensor(uc.codes.astype(np.int64)), torch.as_tensor(cols)] = 1.0
    return X, [str(u) for u in uc.categories]


# ---- 2. fresh critic -----------------------------------------------------------------------------

def sample_fakes(kind: str, X: torch.Tensor, seed: int, gan=None) -> torch.Tensor:
    """One fake per real user, at that user's length: uniform / popularity without replacement (Gumbel-top-k
    of log weights), or the GAN's training-time draw from the user's own template."""
    g = torch.Generator().manual_seed(10_000 + seed)
    lengths = X.sum(1).long()
    if kind == "gan":
        G = gan.generator.eval()
        rows = torch.arange(len(X))
        templates = gan.templates(rows)  # the GAN's own template order = sorted user ids, as X's
        with torch.no_grad():
            out = torch.cat([_draw(G, templates[s:s + 256], lengths[s:s + 256], gan.config, g)
                             for s in range(0, len(X), 256)])
        return out.round()
    logw = torch.zeros(X.shape[1]) if kind == "uniform" else torch.log(X.sum(0).clamp_min(1e-8))
    u = torch.rand(X.shape, generator=g).clamp(1e-10, 1 - 1e-7)
    s = logw[None, :] - torch.log(-torch.log(u))
    out = torch.zeros_like(X)
    for r in range(len(X)):
        out[r, torch.topk(s[r], int(lengths[r])).indices] = 1.0
    return out


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    ranks = torch.as_tensor(pd.Series(torch.cat([pos, neg]).numpy()).rank().to_numpy().copy())
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def hanley_mcneil_se(a: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley & McNeil 1982)."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


def fresh_critic_auc(X: torch.Tensor, fakes: torch.Tensor, seed: int, steps: int) -> float:
    """Train an MLP real-vs-fake on 70% of the users (their real row and their fake), AUC on the rest."""
    n = len(X)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train = int(round(CRITIC["train_fraction"] * n))
    tr, te = perm[:n_train], perm[n_train:]
    xs = torch.cat([X[tr], fakes[tr]])
    ys = torch.cat([torch.ones(len(tr)), torch.zeros(len(tr))])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(X.shape[1], CRITIC["hidden"]), nn.ReLU(), nn.Linear(CRITIC["hidden"], 1))
    opt = torch.optim.Adam(net.parameters(), lr=CRITIC["lr"])
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        b = torch.randint(len(xs), (min(CRITIC["batch"], len(xs)),), generator=g)
        loss = nn.functional.binary_cross_entropy_with_logits(net(xs[b]).squeeze(1), ys[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return auc(net(X[te]).squeeze(1), net(fakes[te]).squeeze(1))


# ---- 3./4. stealth and screen --------------------------------------------------------------------

def anomaly_pool_share(r, fake_users: list[str], pool_fraction: float) -> float:
    """Share of the fakes among the ceil(pool_fraction * users) most anomalous users (screen_users' pool)."""
    a = r.features["anomaly"].to_numpy()
    n_pool = max(1, int(math.ceil(pool_fraction * len(a))))
    pool = r.features.index.to_numpy()[np.argsort(-a, kind="stable")[:n_pool]]
    return len(set(map(str, pool)) & set(fake_users)) / len(fake_users)


def screen_row(poisoned, screen: ScreenConfig) -> dict:
    r = screen_users(poisoned.interactions, screen)
    m = detection_metrics(r.flagged, poisoned.fake_users)
    fakes = set(poisoned.fake_users)
    return {"precision": m["precision"], "recall": m["recall"], "flagged": int(m["flagged"]),
            "false_positives": sorted(u for u in r.flagged if u not in fakes),
            "targets_found": len(set(r.target_items) & set(poisoned.targets)),
            "anomaly_pool_share": anomaly_pool_share(r, poisoned.fake_users, screen.pool_fraction),
            "fake_degsim": float(r.features.loc[list(poisoned.fake_users), "degsim"].mean())}


def fmt(x, d=3) -> str:
    return f"{x:.{d}f}"


def markdown(meta: dict, res: dict) -> str:
    seeds = meta["seeds"]
    lines = header("GAN fake profiles on ML-100K: training log, fresh critic, stealth, screen", meta)
    lines += [f"Data: {meta['data']}. `GanConfig(seed=s)` defaults otherwise; 5 targets from `select_targets(seed=s)`; "
              f"{meta['n_fake']} fakes (3%); screen `ScreenConfig()` defaults. GAN seeds {', '.join(map(str, seeds))}.", ""]
    # 1. training log
    s0 = seeds[0]
    lines += [f"## 1. Training log (seed {s0})", "",
              "| epoch | d_loss | wasserstein | gp | g_loss | d_acc | d_auc |", "|---|---|---|---|---|---|---|"]
    for row in res["logs"][str(s0)]:
        if row.get("phase") == "gan":
            lines.append(f"| {row['epoch']} | {row['d_loss']:.3f} | {row['wasserstein']:.3f} | {row['gp']:.3f} | "
                         f"{row['g_loss']:.3f} | {row['d_acc']:.3f} | {row['d_auc']:.3f} |")
    lines += ["", "Per seed: last GAN epoch, calibration (TV of G's draws, all users x 2 draws, before -> after), "
              "train_gan time:", "", "| seed | last epoch d_acc | last epoch d_auc | TV before -> after | wall s | CPU s |",
              "|---|---|---|---|---|---|"]
    for s in seeds:
        t = res["train"][str(s)]
        lines.append(f"| {s} | {fmt(t['d_acc'])} | {fmt(t['d_auc'])} | {fmt(t['tv_before'])} -> {fmt(t['tv_after'])} "
                     f"| {t['seconds']:.1f} | {t['cpu_seconds']:.1f} |")
    # 2. fresh critic
    c = res["critic"]
    lines += ["", "## 2. A fresh critic: held-out AUC", "",
              f"MLP {meta['n_items']} -> {CRITIC['hidden']} -> 1, BCE, Adam lr {CRITIC['lr']}, {meta['critic_steps']} "
              f"steps of {CRITIC['batch']}, trained on 70% of the users, AUC on the other {c['n_test']} real + "
              f"{c['n_test']} fake (one fake per user at its own length). Hanley-McNeil SE of one AUC: "
              f"{fmt(min(c['se']))}-{fmt(max(c['se']))}.", "",
              "| fakes | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
              "|---|" + "---|" * (len(seeds) + 1)]
    for name, vals in c["auc"].items():
        cells = [fmt(vals[str(s)]) if str(s) in vals else "–" for s in seeds]
        mean = np.mean(list(vals.values()))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(mean)} |")
    # 3. stealth
    st = res["stealth"]
    lines += ["", f"## 3. Stealth statistics (mean over seeds {', '.join(map(str, seeds))}, {meta['n_fake']} fakes)", "",
              f"`tv` = stealth_stats(real, injected); `tv_no_targets` without the 5 targets; the floor is "
              f"{meta['n_fake']} real users drawn at random against all users (mean of {FLOOR_DRAWS} draws per seed).", "",
              "| profiles | tv | tv_no_targets | length mean ± std | mean degsim (implicit) |", "|---|---|---|---|---|"]
    rl = st["real_length"]
    lines.append(f"| real-{meta['n_fake']} (floor) | {fmt(st['floor_tv'])} | – | real: {rl[0]:.1f} ± {rl[1]:.1f} | "
                 f"real users: {fmt(st['real_degsim'])} |")
    for a in ("gan", "bandwagon", "random"):
        x = st[a]
        lines.append(f"| {a} | {fmt(x['tv'])} | {fmt(x['tv_no_targets'])} | {x['len_mean']:.0f} ± {x['len_std']:.0f} | "
                     f"{fmt(x['degsim'])} |")
    lines += ["", "Per seed (tv / tv_no_targets): " + "; ".join(
        f"{a} " + ", ".join(f"{fmt(v['tv'])}/{fmt(v['tv_no_targets'])}" for v in st["per_seed"][a])
        for a in ("gan", "bandwagon", "random")) + "; floor " + ", ".join(fmt(v) for v in st["per_seed"]["floor"]) + "."]
    # 4. screen
    lines += ["", f"## 4. The poisoning screen at 3% ({meta['n_fake']} fakes), 5 targets, seeds {', '.join(map(str, seeds))}",
              "", "| attack | data | precision | recall | targets found | flagged | fakes in the anomaly pool |",
              "|---|---|---|---|---|---|---|"]
    for a in ("gan", "bandwagon", "random"):
        for mode in ("implicit", "ratings"):
            rows = res["screen"][a][mode]
            lines.append(f"| {a} | {mode} | " + ", ".join(fmt(r['precision']) for r in rows) + " | "
                         + ", ".join(fmt(r['recall']) for r in rows) + " | "
                         + ", ".join(f"{r['targets_found']}/5" for r in rows) + " | "
                         + ", ".join(str(r['flagged']) for r in rows) + " | "
                         + ", ".join(f"{r['anomaly_pool_share']:.0%}" for r in rows) + " |")
    fps = [(a, mode, s, r["false_positives"]) for a in res["screen"] for mode in ("implicit", "ratings")
           for s, r in zip(seeds, res["screen"][a][mode]) if r["false_positives"]]
    lines += ["", "Real users flagged: " + ("; ".join(f"{a} {mode} seed {s}: {', '.join(fp)}" for a, mode, s, fp in fps)
                                            if fps else "none") + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="synthetic 120 x 150 table, tiny GAN (seconds)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = run_meta(args, argv)
    t_start = time.perf_counter()
    seeds = args.seeds
    screen = ScreenConfig()
    if args.smoke:
        rated = synthetic()
        base, variants, critic_steps = {"hidden": 32, "pretrain_epochs": 3, "epochs": 2, "eval_users": 64, "calibrate_rounds": 1,
                                             "profile_lengths": "mean"}, \
            {"GAN, warm start only (`epochs=0`)": {"epochs": 0}}, 20
        seeds = seeds[:1]
        label = "synthetic"
    else:
        params = load_params(args.params)
        rated = load_dataset(params.data, ROOT).interactions
        base, variants, critic_steps = {"profile_lengths": "mean"}, VARIANTS, CRITIC["steps"]
        label = params.data.path
    implicit = rated.drop(columns=["rating"])
    n_real = implicit["user_id"].nunique()
    n_fake = max(1, int(round(FAKE_RATIO * n_real)))
    meta.update(data=f"{n_real} users x {implicit['item_id'].nunique()} items, {len(implicit)} interactions ({label})",
                seeds=seeds, n_fake=n_fake, n_items=int(implicit["item_id"].nunique()), critic_steps=critic_steps)
    print(f"{meta['data']}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    res: dict = {"logs": {}, "train": {}, "critic": {"auc": {}}, "screen": {}, "stealth": {}}
    gans = {}
    for s in seeds:
        c0 = time.process_time()
        gans[s] = g = train_gan(implicit, GanConfig(seed=s, **base))
        last = [r for r in g.log if r.get("phase") == "gan"][-1]
        cal = next(r for r in g.log if r.get("phase") == "calibrate")
        res["logs"][str(s)] = g.log
        res["train"][str(s)] = {"d_acc": last["d_acc"], "d_auc": last["d_auc"], "tv_before": cal["tv_before"],
                                "tv_after": cal["tv_after"], "seconds": g.seconds, "cpu_seconds": time.process_time() - c0}
        print(f"train_gan seed {s}: {g.seconds:.1f}s, last d_acc {last['d_acc']:.3f} d_auc {last['d_auc']:.3f}, "
              f"TV {cal['tv_before']:.3f} -> {cal['tv_after']:.3f}", flush=True)

    # 2. fresh critic
    X, users = matrix(implicit, gans[seeds[0]].item_ids)
    assert users == sorted(users) and X.sum().item() == len(implicit.drop_duplicates(["user_id", "item_id"]))
    auc_tab = res["critic"]["auc"]
    for kind, name in (("uniform", "uniform sampling (random attack fillers)"),
                       ("popularity", "popularity sampling (bandwagon fillers)"), ("gan", "GAN, default (8 epochs)")):
        auc_tab[name] = {}
        for s in seeds:
            fakes = sample_fakes(kind, X, s, gans[s])
            auc_tab[name][str(s)] = fresh_critic_auc(X, fakes, s, critic_steps)
            print(f"fresh critic, {name}, seed {s}: AUC {auc_tab[name][str(s)]:.3f}", flush=True)
    for name, over in variants.items():
        auc_tab[name] = {}
        for s in seeds:
            g = train_gan(implicit, GanConfig(seed=s, **{**base, **over}))
            auc_tab[name][str(s)] = fresh_critic_auc(X, sample_fakes("gan", X, s, g), s, critic_steps)
            print(f"fresh critic, {name}, seed {s}: AUC {auc_tab[name][str(s)]:.3f} (train {g.seconds:.1f}s)", flush=True)
    n_test = res["critic"]["n_test"] = len(X) - int(round(CRITIC["train_fraction"] * len(X)))
    res["critic"]["se"] = [hanley_mcneil_se(a, n_test, n_test) for v in auc_tab.values() for a in v.values()]

    # 3. stealth and 4. screen
    clean = screen_users(implicit, screen)
    per = {"gan": [], "bandwagon": [], "random": [], "floor": []}
    degsim = {"gan": [], "bandwagon": [], "random": []}
    lens = {"gan": [], "bandwagon": [], "random": []}
    res["screen"] = {a: {"implicit": [], "ratings": []} for a in ("gan", "bandwagon", "random")}
    for s in seeds:
        targets = select_targets(implicit, N_TARGETS, seed=s)
        rng = np.random.default_rng(s)
        real_ids = np.asarray(sorted(implicit["user_id"].unique()))
        per["floor"].append(float(np.mean([  # the sampling floor: FLOOR_DRAWS draws of n_fake real users
            stealth_stats(implicit, implicit[implicit["user_id"].isin(set(rng.choice(real_ids, n_fake, replace=False)))])[
                "tv_distance"] for _ in range(FLOOR_DRAWS)])))
        for mode, data in (("implicit", implicit), ("ratings", rated)):
            cfg = GanConfig(seed=s, **base)
            attacks = {"gan": gan_attack(data, targets, cfg, result=gans[s]),
                       "bandwagon": inject_attack(data, attack="bandwagon", targets=targets, fake_ratio=FAKE_RATIO, seed=s,
                                                  profile_lengths="mean"),
                       "random": inject_attack(data, attack="random", targets=targets, fake_ratio=FAKE_RATIO, seed=s,
                                               profile_lengths="mean")}
            for a, p in attacks.items():
                row = screen_row(p, screen)
                res["screen"][a][mode].append(row)
                print(f"seed {s} {mode:8s} {a:9s}: P {row['precision']:.3f} R {row['recall']:.3f} "
                      f"targets {row['targets_found']}/5 pool {row['anomaly_pool_share']:.0%}", flush=True)
                if mode == "implicit":
                    full = stealth_stats(implicit, p.injected)
                    per[a].append({"tv": full["tv_distance"],
                                   "tv_no_targets": stealth_stats(implicit, p.injected, exclude_items=targets)["tv_distance"]})
                    lens[a].append((full["fake_length_mean"], full["fake_length_std"]))
                    degsim[a].append(row["fake_degsim"])
    real_stats = stealth_stats(implicit, implicit)
    res["stealth"] = {"floor_tv": float(np.mean(per["floor"])), "per_seed": per,
                      "real_length": (real_stats["real_length_mean"], real_stats["real_length_std"]),
                      "real_degsim": float(clean.features["degsim"].mean()), "clean_flagged": len(clean.flagged)}
    for a in ("gan", "bandwagon", "random"):
        res["stealth"][a] = {"tv": float(np.mean([v["tv"] for v in per[a]])),
                             "tv_no_targets": float(np.mean([v["tv_no_targets"] for v in per[a]])),
                             "len_mean": float(np.mean([v[0] for v in lens[a]])),
                             "len_std": float(np.mean([v[1] for v in lens[a]])), "degsim": float(np.mean(degsim[a]))}

    meta.update(seconds=time.perf_counter() - t_start, load_after=os.getloadavg()[0])
    md = markdown(meta, res)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"gan_stealth_{meta['date'][:10]}{'_smoke' if args.smoke else ''}"
    (args.out / f"{stem}.md").write_text(md)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, **res}, indent=1, default=float) + "\n")
    print(f"wrote {args.out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
