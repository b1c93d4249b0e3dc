"""Attack strength first: target promotion of every poisoning attack on a retrained MF-BPR, over fake
ratios x target draws (the table in docs/poisoning.md, "Attack strength").

Grid (one run):
  data        data/ml-100k as params.yaml loads it; the pipeline's split (params.yaml split); the attack
              sees every real interaction, its fakes join the training part (evaluation.poisoning.poisoned_split)
  attacks     random, average, bandwagon, segment (rrec_core.poisoning.inject_attack), gradient
              (rrec_core.poisoning.gradient_attack, params.yaml poisoning.gradient), the GAN and the GAN
              tuned for promotion (gan_attack / promotion_gan_attack with params.yaml poisoning.gan_promotion,
              a generator trained here with params.yaml gan on the pipeline's training split, as the
              gan_samples stage trains it); fake profile lengths drawn from the real length distribution
  fake ratio  1% and 3% of the real users
  seeds       1, 2, 3: one target drawn by select_targets(n_targets=1, seed) and the attack's seed
  victim      MF-BPR with params.yaml pretrain.mf_bpr, trained from scratch on each poisoned split
  measured    on real users who had not interacted with the target: target HR@10, HR@50, exposure@50,
              rank percentile (rrec_core.poisoning.poisoning_metrics), and each attack's own seconds

The adversarially fine-tuned victim is left out: its numbers at the default setting are in
metrics/poisoning.json. Each run also records the attack's stealth AUC (rrec_core.poisoning.stealth).

    .venv/bin/python bench/poisoning_strength.py                       # ~22 min on 2 quiet cores
    .venv/bin/python bench/poisoning_strength.py --attacks gan,gan_promotion   # some attacks only
    .venv/bin/python bench/poisoning_strength.py --smoke --out /tmp/x  # synthetic 150 x 200 table, seconds

Writes bench/results/poisoning_strength_<date>.md (+ .json with every run); `--smoke`: *_smoke.*.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout
from rrec_core.config import EvalConfig, MFConfig, load_params  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.data.split import split_interactions  # noqa: E402
from rrec_core.evaluation.poisoning import poisoned_split  # noqa: E402
from rrec_core.poisoning import inject_attack, item_popularity, poisoning_metrics, select_targets  # noqa: E402
from rrec_core.poisoning.gan import gan_attack, train_gan  # noqa: E402
from rrec_core.poisoning.gradient import gradient_attack  # noqa: E402
from rrec_core.poisoning.promotion_gan import promotion_gan_attack  # noqa: E402
from rrec_core.poisoning.stealth import stealth_auc  # noqa: E402
from rrec_core.training.loop import build_model, train_recommender  # noqa: E402

ATTACKS = ("random", "average", "bandwagon", "segment", "gradient", "gan", "gan_promotion")
RATIOS = (0.01, 0.03)
SEEDS = (1, 2, 3)


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}{' (uncommitted changes in the tree)' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def synthetic(n_users=150, n_items=200, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_items + 1) ** 0.9
    rows = [(f"u{u}", f"i{i}") for u in range(n_users)
            for i in rng.choice(n_items, rng.integers(20, 41), replace=False, p=w / w.sum())]
    df = pd.DataFrame(rows, columns=["user_id", "item_id"])
    df["timestamp"] = np.arange(len(df), dtype=np.int64)
    return df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="synthetic table, tiny victim, one seed (seconds)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset of " + ", ".join(ATTACKS))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    params = load_params(args.params)
    if args.smoke:
        inter = synthetic()
        split = split_interactions(inter, params.split)
        mf = MFConfig(embedding_dim=8, lr=0.01, batch_size=256, epochs=3, patience=100, device="cpu", eval_every=3)
        seeds, ratios = (1,), (0.03,)
        gcfg = params.poisoning.gradient.model_copy(update={"steps": 2, "dim": 8})
        pcfg = params.poisoning.gan_promotion.model_copy(update={"steps": 2, "dim": 8})
        gan_cfg = params.gan.model_copy(update={"epochs": 1, "pretrain_epochs": 1, "hidden": 32})
        label = "synthetic 150 x 200"
    else:
        ds = load_dataset(params.data, ROOT)
        inter = ds.interactions
        split = split_interactions(inter, params.split, ds.items["item_id"].tolist() if ds.items is not None else None)
        mf, seeds, ratios, gcfg = params.pretrain.mf_bpr, SEEDS, RATIOS, params.poisoning.gradient
        pcfg, gan_cfg = params.poisoning.gan_promotion, params.gan
        label = f"{params.data.path}: {split.n_users} users x {split.n_items} items"
    real_users = [str(u) for u in split.user_ids]
    pop = item_popularity(inter)
    ev = EvalConfig(ks=(10,))

    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        ap.error(f"unknown attacks {unknown}; choose among {', '.join(ATTACKS)}")

    def victim(s):
        return train_recommender(build_model("mf_bpr", s, mf), s, mf, ev, progress=False).model

    trained_gan = []

    def generator():
        """The GAN as the gan_samples stage trains it: on the training split's (user, item) pairs."""
        if not trained_gan:
            train = split.to_frame().query("part == 'train'")[["user_id", "item_id"]].reset_index(drop=True)
            train["timestamp"] = np.arange(len(train), dtype=np.int64)
            trained_gan.append(train_gan(train.astype({"user_id": "str", "item_id": "str"}), gan_cfg))
        return trained_gan[0]

    runs = []
    for seed in seeds:
        target = select_targets(inter, 1, seed=seed)
        clean = poisoning_metrics(victim(split), target, split, users=real_users)
        runs.append({"attack": "none", "ratio": 0.0, "seed": seed, "target": target[0],
                     "target_popularity": int(pop[target[0]]), **clean, "attack_seconds": 0.0})
        print(runs[-1], flush=True)
        for ratio in ratios:
            for attack in attacks:
                if attack in ("gan", "gan_promotion"):
                    generator()  # trained once, before the clock: attack seconds are the attack's own
                t0 = time.perf_counter()
                if attack == "gradient":
                    p = gradient_attack(inter, targets=target, cfg=gcfg, fake_ratio=ratio, seed=seed)
                elif attack == "gan":
                    p = gan_attack(inter, targets=target, result=generator(), fake_ratio=ratio, seed=seed)
                elif attack == "gan_promotion":
                    p = promotion_gan_attack(inter, generator(), targets=target, cfg=pcfg, fake_ratio=ratio, seed=seed)
                else:
                    p = inject_attack(inter, attack=attack, targets=target, fake_ratio=ratio, seed=seed)
                secs = time.perf_counter() - t0
                s = poisoned_split(split, p.injected)
                m = poisoning_metrics(victim(s), target, s, users=real_users)
                st = stealth_auc(p.interactions, p.fake_users, target, params.validation.screen, seed=seed)
                runs.append({"attack": attack, "ratio": ratio, "seed": seed, "target": target[0],
                             "target_popularity": int(pop[target[0]]), "n_fake": len(p.fake_users), **m,
                             "stealth_auc": st["stealth_auc"], "attack_seconds": round(secs, 1)})
                print(runs[-1], flush=True)

    df = pd.DataFrame(runs)
    cols = ["target_hit@10", "target_hit@50", "target_exposure@50", "target_percentile"]
    summary = df.groupby(["ratio", "attack"], sort=False)[cols + ["stealth_auc", "attack_seconds"]].agg(["mean", "min", "max"])
    date = dt.date.today().isoformat()
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{cpu_name()} ({os.cpu_count()} cores)",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "commit": git_state(), "data": label,
            "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/poisoning_strength.py", *(argv or sys.argv[1:])]),
            "smoke": args.smoke, "gradient": gcfg.model_dump(mode="json"), "gan_promotion": pcfg.model_dump(mode="json"),
            "gan": gan_cfg.model_dump(mode="json"), "victim": mf.model_dump(mode="json")}
    lines = [f"# Poisoning attack strength, {date}", ""]
    if args.smoke:
        lines += ["**--smoke run: a synthetic table and a tiny victim; the figures mean nothing.**", ""]
    lines += [f"Machine: {meta['machine']}, torch {meta['torch']}, {meta['threads']} threads; commit {meta['commit']}.",
              f"Data: {label}. Command: `{meta['command']}`.", "",
              "One target per seed (select_targets(n_targets=1, seed)), MF-BPR retrained from scratch on each poisoned "
              "split, real users who had not interacted with the target. Mean (min-max) over seeds "
              f"{', '.join(map(str, seeds))}:", "",
              "| fake ratio | attack | HR@10 | HR@50 | exposure@50 | percentile | stealth AUC | attack s |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    clean = df[df["attack"] == "none"]
    lines.append(f"| 0 | none | {clean['target_hit@10'].mean():.4f} | {clean['target_hit@50'].mean():.4f} | "
                 f"{clean['target_exposure@50'].mean():.4f} | {clean['target_percentile'].mean():.3f} | | |")
    fmt = lambda r, c, d: f"{r[(c, 'mean')]:.{d}f} ({r[(c, 'min')]:.{d}f}-{r[(c, 'max')]:.{d}f})"  # noqa: E731
    for (ratio, attack), r in summary.iterrows():
        if attack == "none":
            continue
        lines.append(f"| {100 * ratio:.0f}% | {attack} | {fmt(r, 'target_hit@10', 4)} | {fmt(r, 'target_hit@50', 4)} | "
                     f"{fmt(r, 'target_exposure@50', 4)} | {fmt(r, 'target_percentile', 3)} | {fmt(r, 'stealth_auc', 2)} | "
                     f"{r[('attack_seconds', 'mean')]:.1f} |")
    lines += ["", "Every run:", "", df.to_markdown(index=False, floatfmt=".4f"), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"poisoning_strength_{date}{'_smoke' if args.smoke else ''}"
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    print("\n".join(lines[:16 + 2 * len(attacks) * len(ratios)]))
    print(f"wrote {args.out / stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
