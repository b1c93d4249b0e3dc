"""The poisoning screen and a supervised detector, each judged only on attack families it was not tuned
on (rrec_core.poisoning.protocol: leave one family out). The table in docs/poisoning.md, "Held-out families".

Grid (one run):
  data        every interaction of data/ml-100k (what the validation stage screens), implicit (ids only)
  families    random, average, bandwagon, segment (inject_attack), gradient (gradient_attack, params.yaml
              poisoning.gradient), gan (train_gan with GanConfig(seed=0) once, then gan_attack); one target
              per trial (select_targets(n_targets=1, seed)), real-length profiles
  variants    each injection as is, and obfuscated (shilling.obfuscate, strength 0.3): noise,
              target_shift; a variant belongs to its base family (left out with it)
  fake ratio  1% and 3%; seeds 1 and 2
  detectors   screen: ScreenConfig picked from min_group {1, 2, 3} x family_error {0.01, 0.05} by mean F1
              on the tuning families; supervised: logistic regression on the screen's profile features,
              threshold by mean F1 on the tuning families
  clean data  users flagged without an attack, each detector fitted on every trial

    .venv/bin/python bench/screen_protocol.py                       # ~10 min on 2 quiet cores
    .venv/bin/python bench/screen_protocol.py --smoke --out /tmp/x  # synthetic 150 x 200 table, seconds

Writes bench/results/screen_protocol_<date>.md (+ .json with every row); `--smoke`: *_smoke.*.
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
from rrec_core.config import GanConfig, load_params  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.poisoning import gan_attack, inject_attack, select_targets, train_gan  # noqa: E402
from rrec_core.poisoning.gradient import gradient_attack  # noqa: E402
from rrec_core.poisoning.protocol import (  # noqa: E402
    Trial,
    clean_false_positives,
    held_out_family_scores,
    screen_detector,
    supervised_detector,
)
from rrec_core.poisoning.shilling import obfuscate  # noqa: E402

FAMILIES = ("random", "average", "bandwagon", "segment", "gradient", "gan")
OBFUSCATIONS = ("noise", "target_shift")
RATIOS = (0.01, 0.03)
SEEDS = (1, 2)


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
    ap.add_argument("--smoke", action="store_true", help="synthetic table, two families, one seed (seconds)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    params = load_params(args.params)
    t_start = time.perf_counter()
    if args.smoke:
        inter = synthetic()
        families, ratios, seeds = ("random", "bandwagon", "gradient"), (0.05,), (1,)
        gcfg = params.poisoning.gradient.model_copy(update={"steps": 2, "dim": 8})
        grid = {"min_group": (1, 3), "family_error": (0.01,)}
        label = "synthetic 150 x 200"
    else:
        inter = load_dataset(params.data, ROOT).interactions[["user_id", "item_id", "timestamp"]]
        families, ratios, seeds, gcfg = FAMILIES, RATIOS, SEEDS, params.poisoning.gradient
        grid = {"min_group": (1, 2, 3), "family_error": (0.01, 0.05)}
        label = f"{params.data.path}: {inter['user_id'].nunique()} users x {inter['item_id'].nunique()} items, implicit"
    gan = train_gan(inter, GanConfig(seed=0)) if "gan" in families else None

    trials: list[Trial] = []
    for fam in families:
        for ratio in ratios:
            for seed in seeds:
                target = select_targets(inter, 1, seed=seed)
                if fam == "gradient":
                    base = gradient_attack(inter, targets=target, cfg=gcfg, fake_ratio=ratio, seed=seed)
                elif fam == "gan":
                    base = gan_attack(inter, targets=target, result=gan, fake_ratio=ratio, seed=seed)
                else:
                    base = inject_attack(inter, attack=fam, targets=target, fake_ratio=ratio, seed=seed)
                trials.append(Trial(fam, fam, ratio, seed, base))
                for kind in OBFUSCATIONS:
                    trials.append(Trial(fam, f"{fam}+{kind}", ratio, seed, obfuscate(base, kind, 0.3, seed=seed)))
                print(f"injected {fam} {ratio} seed {seed} ({time.perf_counter() - t_start:.0f}s)", flush=True)
    detectors = [screen_detector(grid=grid, clean=inter), supervised_detector()]  # ≤ 1% of clean users flagged
    rows = held_out_family_scores(trials, detectors)
    clean = clean_false_positives(inter, trials, detectors)
    seconds = time.perf_counter() - t_start

    date = dt.date.today().isoformat()
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{cpu_name()} ({os.cpu_count()} cores)",
            "torch": torch.__version__, "commit": git_state(), "data": label, "seconds": round(seconds, 1),
            "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/screen_protocol.py", *(argv or sys.argv[1:])]),
            "smoke": args.smoke, "grid": {k: list(v) for k, v in grid.items()}}
    lines = [f"# Detectors on held-out attack families, {date}", ""]
    if args.smoke:
        lines += ["**--smoke run: a synthetic table; the figures mean nothing.**", ""]
    lines += [f"Machine: {meta['machine']}, torch {meta['torch']}; commit {meta['commit']}; {seconds:.0f} s.",
              f"Data: {label}. Command: `{meta['command']}`.", "",
              "Each detector is fitted on every family but one and scored on that one (all its variants, ratios, "
              "seeds). Mean over the held-out families (each family's mean over its trials first):", "",
              "| detector | fake ratio | precision | recall | F1 | real users flagged (mean) |",
              "|---|---|---:|---:|---:|---:|"]
    for (det, ratio), g in rows.groupby(["detector", "ratio"]):
        fam = g.groupby("held_out")[["precision", "recall", "f1", "real_flagged"]].mean()
        lines.append(f"| {det} | {100 * ratio:.0f}% | {fam['precision'].mean():.3f} | {fam['recall'].mean():.3f} | "
                     f"{fam['f1'].mean():.3f} | {fam['real_flagged'].mean():.1f} |")
    lines += ["", "Per held-out family and variant (mean over seeds):", "",
              "| detector | ratio | variant | precision | recall | real flagged | fitted |", "|---|---|---|---:|---:|---:|---|"]
    fitted_cols = [c for c in rows.columns if c in ("min_group", "family_error", "pool_fraction", "threshold")]
    for (det, ratio, variant), g in rows.groupby(["detector", "ratio", "variant"], sort=False):
        fitted = ", ".join(f"{c}={g[c].iloc[0]:.3g}" for c in fitted_cols if pd.notna(g[c].iloc[0]))
        lines.append(f"| {det} | {100 * ratio:.0f}% | {variant} | {g['precision'].mean():.3f} | {g['recall'].mean():.3f} | "
                     f"{g['real_flagged'].mean():.1f} | {fitted} |")
    lines += ["", "Clean data (no attack), each detector fitted on all trials:", "",
              clean.to_markdown(index=False, floatfmt=".4f"), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"screen_protocol_{date}{'_smoke' if args.smoke else ''}"
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows.to_dict("records"),
                                                       "clean": clean.to_dict("records")}, indent=1, default=str))
    print("\n".join(lines[:14]))
    print(f"wrote {args.out / stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
