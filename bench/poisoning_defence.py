"""Training-time defences that need no detection, judged on the strongest attack (the gradient attack):
adversarial fine-tuning variants on the poisoned data (the table in docs/poisoning.md, "Defences").

Grid (one run):
  data        data/ml-100k as params.yaml loads it and splits it; the gradient attack (params.yaml
              poisoning.gradient) at `--ratio` (3%) with one target per seed (select_targets(n_targets=1, seed))
  victim      MF-BPR (params.yaml pretrain.mf_bpr) retrained from scratch on the poisoned split ("none":
              no defence), then fine-tuned from it with each defence; params.yaml adversarial otherwise
  defences    pgd-1 (PGD-AT eps 1.0, uniform radii), pgd-2 (eps 2.0), vat-1 and vat-2
              (adversarial.user_radius: vulnerability, eps 1.0 / 2.0; VAT-style per-user radii)
  cost        each defence also fine-tunes the clean pretrained MF-BPR; its NDCG@10 on the real users'
              test pairs against the clean pretrained model's is the clean cost
  seeds       1, 2, 3

    .venv/bin/python bench/poisoning_defence.py                       # ~8 min on 2 quiet cores
    .venv/bin/python bench/poisoning_defence.py --smoke --out /tmp/x  # synthetic 150 x 200 table, seconds
    .venv/bin/python bench/poisoning_defence.py --set pretrain.mf_bpr.weight_decay=1e-5 --suffix _decay \
        --defences '{"vat-rel": {"eps": 0.25, "scale": "relative", "user_radius": "vulnerability"}}'

Writes bench/results/poisoning_defence_<date>.md (+ .json with every run); `--smoke`: *_smoke.*.
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
from orchestration.cli import parse_overrides  # noqa: E402
from rrec_core.config import EvalConfig, MFConfig, load_params, resolve_config  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.data.split import split_interactions  # noqa: E402
from rrec_core.evaluation.poisoning import _real_ndcg, poisoned_split  # noqa: E402
from rrec_core.poisoning import poisoning_metrics, select_targets  # noqa: E402
from rrec_core.poisoning.gradient import gradient_attack  # noqa: E402
from rrec_core.training.adversarial import adversarial_finetune  # noqa: E402
from rrec_core.training.loop import build_model, train_recommender  # noqa: E402

# uniform radii named explicitly: params.yaml's adversarial.user_radius is VAT's since 2026-12-03
DEFENCES = {"pgd-1": {"eps": 1.0, "user_radius": "uniform"}, "pgd-2": {"eps": 2.0, "user_radius": "uniform"},
            "vat-1": {"eps": 1.0, "user_radius": "vulnerability"}, "vat-2": {"eps": 2.0, "user_radius": "vulnerability"}}
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
    ap.add_argument("--smoke", action="store_true", help="synthetic table, tiny models, one seed (seconds)")
    ap.add_argument("--ratio", type=float, default=0.03)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--defences", type=json.loads, default=None,
                    help='JSON {name: overrides of params.yaml adversarial} instead of the default four, e.g. '
                         '\'{"vat-rel": {"eps": 0.25, "scale": "relative", "user_radius": "vulnerability"}}\'')
    ap.add_argument("--suffix", default="", help="appended to the result files' names")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override of params.yaml as `rrec run --set` takes it, e.g. pretrain.mf_bpr.weight_decay=1e-5")
    args = ap.parse_args(argv)
    defences = args.defences or DEFENCES
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    params = resolve_config(load_params(args.params), parse_overrides(args.set))
    adv = params.adversarial
    if args.smoke:
        inter = synthetic()
        split = split_interactions(inter, params.split)
        mf = MFConfig(embedding_dim=8, lr=0.01, batch_size=256, epochs=3, patience=100, device="cpu", eval_every=3)
        adv = adv.model_copy(update={"steps": 2, "select_attack_steps": 2,
                                     "train": adv.train.model_copy(update={"epochs": 2, "eval_every": 1})})
        gcfg = params.poisoning.gradient.model_copy(update={"steps": 2, "dim": 8})
        seeds, label = (1,), "synthetic 150 x 200"
    else:
        ds = load_dataset(params.data, ROOT)
        inter = ds.interactions
        split = split_interactions(inter, params.split, ds.items["item_id"].tolist() if ds.items is not None else None)
        mf, gcfg, seeds = params.pretrain.mf_bpr, params.poisoning.gradient, SEEDS
        label = f"{params.data.path}: {split.n_users} users x {split.n_items} items"
    ev = EvalConfig(ks=(10,))
    real = [str(u) for u in split.user_ids]
    n_real = split.n_users

    def pretrain(s):
        return train_recommender(build_model("mf_bpr", s, mf), s, mf, ev, progress=False).model

    t_start = time.perf_counter()
    clean_pre = pretrain(split)
    clean_ndcg = {"none": _real_ndcg(clean_pre, split, n_real)}
    for name, over in defences.items():
        clean_ndcg[name] = _real_ndcg(adversarial_finetune(clean_pre, split, adv.model_copy(update=over), ev,
                                                           progress=False).model, split, n_real)
    runs = []
    for seed in seeds:
        target = select_targets(inter, 1, seed=seed)
        p = gradient_attack(inter, targets=target, cfg=gcfg, fake_ratio=args.ratio, seed=seed)
        s = poisoned_split(split, p.injected)
        pre = pretrain(s)
        models = {"none": pre}
        for name, over in defences.items():
            models[name] = adversarial_finetune(pre, s, adv.model_copy(update=over), ev, progress=False).model
        for name, m in models.items():
            runs.append({"seed": seed, "target": target[0], "defence": name,
                         **poisoning_metrics(m, target, s, users=real), "ndcg@10": _real_ndcg(m, s, n_real),
                         "clean_ndcg@10": clean_ndcg[name]})
            print(runs[-1], flush=True)
    seconds = time.perf_counter() - t_start
    df = pd.DataFrame(runs)
    date = dt.date.today().isoformat()
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": f"{cpu_name()} ({os.cpu_count()} cores)",
            "torch": torch.__version__, "commit": git_state(), "data": label, "seconds": round(seconds, 1),
            "ratio": args.ratio, "smoke": args.smoke, "defences": defences, "params": str(args.params),
            "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/poisoning_defence.py", *(argv or sys.argv[1:])])}
    lines = [f"# Detection-free defences against the gradient attack, {date}", ""]
    if args.smoke:
        lines += ["**--smoke run: a synthetic table and tiny models; the figures mean nothing.**", ""]
    base = df[df["defence"] == "none"].set_index("seed")["target_hit@50"]
    lines += [f"Machine: {meta['machine']}, torch {meta['torch']}; commit {meta['commit']}; {seconds:.0f} s.",
              f"Data: {label}; gradient attack at {100 * args.ratio:.0f}%, one target per seed ({', '.join(map(str, seeds))}). "
              f"Command: `{meta['command']}`.", "",
              "Mean over seeds; HR@50 kept = the defence's target HR@50 / the undefended MF-BPR's (per seed, then "
              "the mean); clean cost = NDCG@10 of the defence on clean data / the clean pretrained MF-BPR's − 1:", "",
              "| defence | target HR@10 | target HR@50 | HR@50 kept | percentile | clean NDCG@10 | clean cost |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ["none", *defences]:
        g = df[df["defence"] == name].set_index("seed")
        kept = (g["target_hit@50"] / base.where(base > 0)).mean()
        lines.append(f"| {name} | {g['target_hit@10'].mean():.4f} | {g['target_hit@50'].mean():.4f} | "
                     f"{'n/a' if pd.isna(kept) else f'{100 * kept:.0f}%'} | {g['target_percentile'].mean():.3f} | "
                     f"{clean_ndcg[name]:.4f} | {100 * (clean_ndcg[name] / clean_ndcg['none'] - 1):+.1f}% |")
    lines += ["", "Every run:", "", df.to_markdown(index=False, floatfmt=".4f"), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"poisoning_defence_{date}{'_smoke' if args.smoke else ''}{args.suffix}"
    (args.out / f"{stem}.md").write_text("\n".join(lines))
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "runs": runs, "clean_ndcg": clean_ndcg}, indent=1))
    print("\n".join(lines[:16]))
    print(f"wrote {args.out / stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
