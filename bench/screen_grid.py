"""The poisoning screen on ML-100K: precision / recall over fake ratio x attack x attack seed, with and
without the rating column (the table in docs/poisoning.md, "Measured", "ML-100K").

Grid (one run):
  data        every interaction of data/ml-100k as loaded (what the validation stage screens), once with
              the rating column ("ratings") and once without it ("implicit")
  attacks     rrec_core.poisoning.inject_attack: random, average, bandwagon, segment
  fake ratio  1%, 3%, 5% of the 943 real users (9, 28, 47 fakes)
  seeds       attack seeds 1, 2, 3; the 5 targets are drawn by select_targets with the same seed
              (ShillingConfig defaults: popularity quantiles 0.1-0.3, at least 5 interactions)
  screen      rrec_core.poisoning.screen_users with ScreenConfig() defaults, scored by detection_metrics

Second part, the conditions of the `gan_samples` report (metrics/gan.json): the screen there runs on the
80% training split (params.yaml split, rows as rrec_core.pipeline.generate_gan_samples builds them: no
rating column, timestamps = row order), with attack seed = gan.seed (0). That part screens random,
average and bandwagon at 3% on the training split for seeds 0-3, next to the full data with seed 0, so a
difference between the report and the table above can be traced to the data or to the seed.

    .venv/bin/python bench/screen_grid.py                    # the full grid (~2-4 min on 2 quiet cores)
    .venv/bin/python bench/screen_grid.py --smoke --out /tmp/x   # 150-user subsample, seconds

Writes bench/results/screen_grid_<date>.md (+ .json with every run); `--smoke` writes *_smoke.*.
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
from rrec_core.config import DataConfig, ScreenConfig, SplitConfig, load_params  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.data.split import split_interactions  # noqa: E402
from rrec_core.poisoning import ATTACKS, ShillingConfig, detection_metrics, inject_attack, screen_users  # noqa: E402

RATIOS = (0.01, 0.03, 0.05)
SEEDS = (1, 2, 3)
TRAIN_SPLIT_SEEDS = (0, 1, 2, 3)
TRAIN_SPLIT_ATTACKS = ("random", "average", "bandwagon")


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
            "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/screen_grid.py", *argv]),
            "commit": git_state(), "load_before": os.getloadavg()[0], "smoke": bool(args.smoke)}


def header(title: str, meta: dict) -> list[str]:
    lines = [f"# {title} ({meta['date'][:10]})", ""]
    if meta["smoke"]:
        lines += ["**--smoke run: a tiny subsample; the figures mean nothing.**", ""]
    lines += [f"- date: {meta['date']}", f"- machine: {meta['machine']}",
              f"- python {meta['python']}, torch {meta['torch']}, {meta['threads']} threads",
              f"- command: `{meta['command']}`", f"- code: commit {meta['commit']}",
              f"- wall time: {meta['seconds']:.0f} s; load average before/after: "
              f"{meta['load_before']:.2f}/{meta['load_after']:.2f}", ""]
    return lines


# ---- the measurement -----------------------------------------------------------------------------

def screen_once(data: pd.DataFrame, attack: str, ratio: float, seed: int, screen: ScreenConfig) -> dict:
    t0 = time.perf_counter()
    # mean-length profiles, as when the committed grid was measured (the default now draws real lengths)
    p = inject_attack(data, ShillingConfig(attack=attack, fake_ratio=ratio, seed=seed, profile_lengths="mean"))
    r = screen_users(p.interactions, screen)
    m = detection_metrics(r.flagged, p.fake_users)
    fakes = set(p.fake_users)
    return {"attack": attack, "ratio": ratio, "seed": seed, "n_fake": len(p.fake_users),
            "precision": m["precision"], "recall": m["recall"], "flagged": int(m["flagged"]),
            "true_positives": int(m["true_positives"]),
            "false_positives": sorted(u for u in r.flagged if u not in fakes),
            "targets": list(p.targets), "detected_items": list(r.target_items),
            "targets_found": len(set(r.target_items) & set(p.targets)),
            "false_target_items": sorted(set(r.target_items) - set(p.targets)),
            "seconds": time.perf_counter() - t0}


def train_split_frame(raw: pd.DataFrame, split_cfg: SplitConfig, catalog) -> pd.DataFrame:
    """The rows generate_gan_samples trains and screens on: the training part, ids only, row-order timestamps."""
    split = split_interactions(raw, split_cfg, catalog)
    train = split.to_frame().query("part == 'train'")[["user_id", "item_id"]].reset_index(drop=True)
    train["timestamp"] = np.arange(len(train), dtype=np.int64)
    return train.astype({"user_id": "str", "item_id": "str"})


def fmt(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") if x == x else "nan"


def cell(rows: list[dict], key: str) -> str:
    return ", ".join(fmt(r[key]) for r in rows)


def markdown(meta: dict, grid: list[dict], clean: dict, split_rows: list[dict]) -> str:
    lines = header("Poisoning screen on ML-100K: fake ratio x attack x seed", meta)
    lines += [f"Data: {meta['data']}. Screen: `screen_users` with `ScreenConfig()` defaults; "
              "`inject_attack(data, ShillingConfig(attack, fake_ratio, seed, profile_lengths=\"mean\"))`, 5 targets drawn by "
              "`select_targets` with the attack seed. Each cell lists seeds " + ", ".join(map(str, meta["seeds"]))
              + " in order.", "",
              f"Without an attack the screen flags {clean['ratings']} users (ratings) and {clean['implicit']} "
              "(implicit).", "",
              "| fake ratio | attack | precision, ratings | recall, ratings | precision, implicit | recall, implicit "
              "| flagged / injected, ratings | flagged / injected, implicit |",
              "|---|---|---|---|---|---|---|---|"]
    for ratio in meta["ratios"]:
        for attack in meta["attacks"]:
            sel = {mode: [r for r in grid if r["ratio"] == ratio and r["attack"] == attack and r["mode"] == mode]
                   for mode in ("ratings", "implicit")}
            n_fake = sel["ratings"][0]["n_fake"]
            lines.append(f"| {ratio:.0%} ({n_fake}) | {attack} | {cell(sel['ratings'], 'precision')} | "
                         f"{cell(sel['ratings'], 'recall')} | {cell(sel['implicit'], 'precision')} | "
                         f"{cell(sel['implicit'], 'recall')} | "
                         + ", ".join(f"{r['flagged']}/{r['n_fake']}" for r in sel["ratings"]) + " | "
                         + ", ".join(f"{r['flagged']}/{r['n_fake']}" for r in sel["implicit"]) + " |")
    lines += ["", "False positives and false target items (runs with any):", ""]
    any_fp = False
    for r in grid:
        if r["false_positives"] or r["false_target_items"]:
            any_fp = True
            lines.append(f"- {r['ratio']:.0%} {r['attack']} seed {r['seed']} ({r['mode']}): "
                         f"{len(r['false_positives'])} real users flagged"
                         + (f" ({', '.join(r['false_positives'][:8])}{', ...' if len(r['false_positives']) > 8 else ''})"
                            if r["false_positives"] else "")
                         + f"; detected items not targets: {r['false_target_items'] or 'none'}; "
                         f"targets found {r['targets_found']} of {len(r['targets'])}")
    if not any_fp:
        lines.append("- none")
    lines += ["", "## The conditions of the gan_samples report (metrics/gan.json)", "",
              "3% fakes, no rating column. `train split`: the 80% training part of the params.yaml split, rows "
              "as `generate_gan_samples` builds them; `full data`: every interaction (as above, implicit). "
              "Attack seed 0 is `gan.seed`, the seed of the report. " + meta["train_split_check"] + ".", "",
              "| data | attack | seed | precision | recall | flagged / injected | real users flagged | "
              "detected items not targets |", "|---|---|---|---|---|---|---|---|"]
    for r in split_rows:
        lines.append(f"| {r['data']} | {r['attack']} | {r['seed']} | {fmt(r['precision'])} | {fmt(r['recall'])} | "
                     f"{r['flagged']}/{r['n_fake']} | {len(r['false_positives'])} | "
                     f"{', '.join(r['false_target_items']) or '–'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="150-user subsample, one ratio and seed (seconds)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = run_meta(args, argv)
    t_start = time.perf_counter()

    params = load_params(args.params)
    data_cfg: DataConfig = params.data
    ds = load_dataset(data_cfg, ROOT)
    raw = ds.interactions
    catalog = ds.items["item_id"].tolist() if ds.items is not None else None
    ratios, seeds, split_seeds, attacks = RATIOS, SEEDS, TRAIN_SPLIT_SEEDS, ATTACKS
    if args.smoke:
        keep = sorted(raw["user_id"].unique())[:150]
        raw = raw[raw["user_id"].isin(keep)]
        ratios, seeds, split_seeds = (0.05,), (1,), (0,)
    screen = params.validation.screen
    if screen.model_dump() != ScreenConfig().model_dump():
        print(f"note: params.yaml's screen differs from ScreenConfig() defaults; using the defaults "
              f"({screen.model_dump()} vs {ScreenConfig().model_dump()})")
    screen = ScreenConfig()
    data = {"ratings": raw, "implicit": raw.drop(columns=["rating"])}
    meta.update(data=f"{raw['user_id'].nunique()} users x {raw['item_id'].nunique()} items, {len(raw)} interactions "
                f"({data_cfg.path})", ratios=list(ratios), seeds=list(seeds), attacks=list(attacks))
    print(f"{meta['data']}; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    clean = {mode: len(screen_users(d, screen).flagged) for mode, d in data.items()}
    print(f"no attack: flagged {clean}", flush=True)
    grid = []
    for ratio in ratios:
        for attack in attacks:
            for seed in seeds:
                for mode, d in data.items():
                    r = {"mode": mode, **screen_once(d, attack, ratio, seed, screen)}
                    grid.append(r)
                    print(f"{ratio:.0%} {attack:9s} seed {seed} {mode:8s}: P {r['precision']:.3f} R {r['recall']:.3f} "
                          f"flagged {r['flagged']}/{r['n_fake']} targets {r['targets_found']}/5 "
                          f"false items {r['false_target_items']} ({r['seconds']:.1f}s)", flush=True)

    train = train_split_frame(raw, params.split, catalog)
    art = ROOT / "artifacts" / "validated_interactions"
    if not args.smoke and (art / "split.parquet").exists():  # the pipeline's own split, when a run left one
        from rrec_core.artifacts import ValidatedData
        tr = ValidatedData.load(art).split.to_frame().query("part == 'train'")
        same = tr[["user_id", "item_id"]].astype(str).reset_index(drop=True).equals(train[["user_id", "item_id"]])
        meta["train_split_check"] = f"rows identical to artifacts/validated_interactions' training part: {same}"
    else:
        meta["train_split_check"] = "artifacts/validated_interactions not compared"
    print(meta["train_split_check"], flush=True)
    split_rows = []
    for label, d, seeds_here in (("full data", data["implicit"], (0,)), ("train split", train, split_seeds)):
        for attack in TRAIN_SPLIT_ATTACKS:
            for seed in seeds_here:
                r = {"data": label, **screen_once(d, attack, 0.03, seed, screen)}
                split_rows.append(r)
                print(f"{label}: 3% {attack} seed {seed}: P {r['precision']:.3f} R {r['recall']:.3f} "
                      f"flagged {r['flagged']}/{r['n_fake']} false items {r['false_target_items']}", flush=True)

    meta.update(seconds=time.perf_counter() - t_start, load_after=os.getloadavg()[0])
    md = markdown(meta, grid, clean, split_rows)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"screen_grid_{meta['date'][:10]}{'_smoke' if args.smoke else ''}"
    (args.out / f"{stem}.md").write_text(md)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "clean_flagged": clean, "grid": grid,
                                                       "gan_samples_conditions": split_rows}, indent=1) + "\n")
    print(f"wrote {args.out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
