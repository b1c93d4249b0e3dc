"""The text hybrid's training choices on ML-100K (docs/architecture.md, "Hybrid:"): test NDCG@10 of
`TextHybrid` trained with the text projection's PyTorch default init at the ID learning rate, zero-init at
the ID rate, and as shipped (zero-init, `text_lr` 1e-4, warm start from MF-BPR), in one run.

Data: the pipeline's split and item text embeddings (`artifacts/validated_interactions`,
`artifacts/item_text_embeddings`, written by `make run`); without them the same are computed through
`rrec_core.pipeline` (load_raw_data, validate_and_split, embed_item_text: the packaged MiniLM, cached under
artifacts/cache). Every arm: `build_model` + `train_recommender` with params.yaml's pretrain configs
(Adam lr 1e-3 for the ID tables, batch 2048, up to 300 epochs, patience 10 on validation NDCG@10), training seeds 2020 (params.yaml) and 2021,
selection on validation NDCG@10, test NDCG@10 with train and valid masked (`evaluate_model`).

Arms (init of text_proj, its learning rate, warm start of the ID tables from the arm "mf_bpr"):
  mf_bpr                      MF-BPR alone (the warm start's source; the anchor)
  default_init_id_rate        PyTorch default Linear init, text_lr = 1e-3 (the ID rate), cold start
  zero_init_id_rate           zero init, text_lr = 1e-3, cold start
  shipped                     zero init, text_lr = 1e-4, warm start (epoch 0 = MF is a valid checkpoint)
  --extra (default on):
  zero_init_text_lr_cold      zero init, text_lr = 1e-4, cold start (the warm start's share)
  zero_init_id_rate_warm      zero init, text_lr = 1e-3, warm start (the lower rate's share)

Also per arm: |text term| / |ID vector| (mean row L2 norms over items, eval mode) at the start and at the
selected checkpoint ("the text term is ~17x the xavier ID vectors" under the default init).

    .venv/bin/python bench/hybrid_ablation.py                       # seeds 2020, 2021: ~5 min on 2 quiet cores
    .venv/bin/python bench/hybrid_ablation.py --no-extra            # the three claimed arms only
    .venv/bin/python bench/hybrid_ablation.py --smoke --out /tmp/x  # synthetic data, 3 epochs, seconds

Writes bench/results/hybrid_ablation_<date>.md (+ .json); `--smoke`: *_smoke.*.
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
from rrec_core.config import EvalConfig, HybridConfig, MFConfig, SplitConfig, load_params  # noqa: E402
from rrec_core.data.split import split_interactions  # noqa: E402
from rrec_core.evaluation.ranking import evaluate_model  # noqa: E402
from rrec_core.training.loop import build_model, train_recommender, warm_start_from  # noqa: E402

# name: (text_proj init, text_lr: "id" = the ID tables' lr or "text" = text_hybrid.text_lr, warm start)
ARMS = {
    "default_init_id_rate": ("default", "id", False),
    "zero_init_id_rate": ("zero", "id", False),
    "shipped": ("zero", "text", True),
}
EXTRA_ARMS = {
    "zero_init_text_lr_cold": ("zero", "text", False),
    "zero_init_id_rate_warm": ("zero", "id", True),
}
SEEDS = (2020, 2021)  # two training seeds fit ~5 min on 2 cores; a third would pass the 8-minute budget
CLAIMED = {"default_init_id_rate": 0.228, "zero_init_id_rate": 0.232, "shipped": 0.288}


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
            "command": " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/hybrid_ablation.py", *argv]),
            "commit": git_state(), "load_before": os.getloadavg()[0], "smoke": bool(args.smoke)}


def header(title: str, meta: dict) -> list[str]:
    lines = [f"# {title} ({meta['date'][:10]})", ""]
    if meta["smoke"]:
        lines += ["**--smoke run: synthetic data, a few epochs; the figures mean nothing.**", ""]
    lines += [f"- date: {meta['date']}", f"- machine: {meta['machine']}",
              f"- python {meta['python']}, torch {meta['torch']}, {meta['threads']} threads",
              f"- command: `{meta['command']}`", f"- code: commit {meta['commit']}",
              f"- wall time: {meta['seconds']:.0f} s; load average before/after: "
              f"{meta['load_before']:.2f}/{meta['load_after']:.2f}", ""]
    return lines


# ---- data ----------------------------------------------------------------------------------------

def pipeline_data(params, artifacts: Path):
    """(split, text features [n_items, d], where they came from)."""
    vd, te = artifacts / "validated_interactions", artifacts / "item_text_embeddings"
    if (vd / "split.parquet").exists() and (te / "embeddings.safetensors").exists():
        from rrec_core.artifacts import ItemTextEmbeddings, ValidatedData

        data, text = ValidatedData.load(vd), ItemTextEmbeddings.load(te)
        source = f"{vd.relative_to(ROOT) if vd.is_relative_to(ROOT) else vd}, {te.relative_to(ROOT) if te.is_relative_to(ROOT) else te}"
    else:
        from rrec_core import pipeline

        raw = pipeline.load_raw_data(params.data, ROOT)
        data = pipeline.validate_and_split(raw, params.validation, params.split)
        text = pipeline.embed_item_text(data, params.encoder, root=ROOT, progress=False)
        source = "computed by rrec_core.pipeline (load_raw_data, validate_and_split, embed_item_text)"
    if text.emb.item_ids != data.split.item_ids:
        raise SystemExit("item text embeddings are not aligned with the split's item ids")
    return data.split, text.emb.embeddings, source


def smoke_data():
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 80
    w = 1.0 / np.arange(1, n_items + 1)
    users, items = [], []
    for u in range(n_users):
        chosen = rng.choice(n_items, rng.integers(10, 20), replace=False, p=w / w.sum())
        users += [f"u{u}"] * len(chosen)
        items += [f"i{i}" for i in chosen]
    inter = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": np.arange(len(users), dtype=np.int64)})
    split = split_interactions(inter, SplitConfig())
    feats = torch.nn.functional.normalize(torch.randn(split.n_items, 24, generator=torch.Generator().manual_seed(0)), dim=1)
    return split, feats, "synthetic (60 users x 80 items, random 24-d text vectors)"


# ---- arms ----------------------------------------------------------------------------------------

@torch.no_grad()
def text_id_ratio(model) -> float:
    """Mean row L2 norm of the projected text term over mean row L2 norm of the ID item vectors (eval mode)."""
    was = model.training
    model.eval()
    r = float(model.text_vectors().norm(dim=1).mean() / model.item_embedding.weight.norm(dim=1).mean().clamp_min(1e-12))
    model.train(was)
    return r


def run_arm(name, kind, split, feats, cfg, eval_cfg, test_cfg, init="zero", text_lr=None, warm_from=None) -> tuple:
    t0 = time.perf_counter()
    model = build_model(kind, split, cfg, feats if kind == "text_hybrid" else None)
    if kind == "text_hybrid" and init == "default":  # PyTorch's own Linear init, drawn from the arm's seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model.text_proj.reset_parameters()
    if warm_from is not None:
        warm_start_from(model, warm_from)
    ratio0 = text_id_ratio(model) if kind == "text_hybrid" else None
    res = train_recommender(model, split, cfg, eval_cfg, progress=False, warm_start=warm_from is not None,
                            text_lr=text_lr if kind == "text_hybrid" else None)
    test = evaluate_model(res.model, split, "test", test_cfg)
    row = {"arm": name, "init": init if kind == "text_hybrid" else "xavier (ID tables)",
           "text_lr": text_lr, "id_lr": cfg.lr, "warm_start": warm_from is not None,
           "best_epoch": res.best_epoch, "epochs_run": sum(1 for h in res.history if h["epoch"] > 0),
           "valid_ndcg@10": res.best_valid.get("ndcg@10"), "test_ndcg@10": test["ndcg@10"],
           "test_recall@10": test.get("recall@10"), "ratio_start": ratio0,
           "ratio_end": text_id_ratio(res.model) if kind == "text_hybrid" else None,
           "seconds": time.perf_counter() - t0}
    print(f"{name}: best epoch {row['best_epoch']} of {row['epochs_run']}, valid {row['valid_ndcg@10']:.4f}, "
          f"test NDCG@10 {row['test_ndcg@10']:.4f}"
          + (f", |text|/|id| {ratio0:.2f} -> {row['ratio_end']:.2f}" if ratio0 is not None else "")
          + f" ({row['seconds']:.0f}s)", flush=True)
    return res.model, row


def markdown(meta: dict, rows: list[dict], pipeline_metrics: dict | None) -> str:
    seeds = meta["seeds"]
    lines = header("Text hybrid on ML-100K: init, text learning rate, warm start", meta)
    lines += [f"Data: {meta['data']}. Training: params.yaml `pretrain` (ID lr {meta['id_lr']}, batch {meta['batch']}, "
              f"≤ {meta['epochs']} epochs, patience {meta['patience']}), training seeds {', '.join(map(str, seeds))} "
              f"({seeds[0]} = params.yaml's, the shipped model's); selection on validation NDCG@10; test NDCG@10 with "
              "train and valid masked. \\|text\\|/\\|ID\\|: mean row norm of the projected text term over that of "
              "the ID item vectors, at the start and at the selected checkpoint.", "",
              "| arm | text_proj init | text_lr | warm start | " + " | ".join(f"test NDCG@10, seed {s}" for s in seeds)
              + " | mean | claimed (architecture.md) | " + " | ".join(f"best epoch / run, seed {s}" for s in seeds)
              + " | \\|text\\|/\\|ID\\| start -> selected (seed " + str(seeds[0]) + ") | seconds per run |",
              "|---|---|---|---|" + "---|" * (2 * len(seeds) + 4)]
    names = list(dict.fromkeys(r["arm"] for r in rows))
    for name in names:
        rs = {r["seed"]: r for r in rows if r["arm"] == name}
        r0 = rs[seeds[0]]
        ratio = (f"{r0['ratio_start']:.2f} -> {r0['ratio_end']:.2f}" if r0["ratio_start"] is not None else "–")
        lines.append(f"| {name} | {r0['init']} | {r0['text_lr'] if r0['text_lr'] is not None else '–'} | "
                     f"{'yes' if r0['warm_start'] else 'no'} | "
                     + " | ".join(f"{rs[s]['test_ndcg@10']:.4f}" for s in seeds)
                     + f" | **{np.mean([rs[s]['test_ndcg@10'] for s in seeds]):.4f}** | {CLAIMED.get(name, '–')} | "
                     + " | ".join(f"{rs[s]['best_epoch']} / {rs[s]['epochs_run']}" for s in seeds)
                     + f" | {ratio} | {np.mean([rs[s]['seconds'] for s in seeds]):.0f} |")
    if pipeline_metrics:
        lines += ["", "metrics/pretrain.json (the committed pipeline run, seed 2020) for comparison: "
                  + ", ".join(f"{k} test NDCG@10 {v:.4f}" for k, v in pipeline_metrics.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="synthetic data, 3 epochs (seconds)")
    ap.add_argument("--no-extra", dest="extra", action="store_false", help="only the three claimed arms (+ mf_bpr)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    ap.add_argument("--artifacts", type=Path, default=ROOT / "artifacts")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                    help="training seeds (params.yaml's 2020 first: the shipped model's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = run_meta(args, argv)
    t_start = time.perf_counter()
    params = load_params(args.params)
    mf_cfg: MFConfig = params.pretrain.mf_bpr
    hy_cfg: HybridConfig = params.pretrain.text_hybrid
    mf_cfg, hy_cfg = (c.model_copy(update={"device": "cpu"}) for c in (mf_cfg, hy_cfg))
    if args.smoke:
        split, feats, source = smoke_data()
        args.seeds = args.seeds[:1]
        mf_cfg = mf_cfg.model_copy(update={"embedding_dim": 8, "epochs": 3, "batch_size": 256})
        hy_cfg = hy_cfg.model_copy(update={"embedding_dim": 8, "epochs": 3, "batch_size": 256})
    else:
        split, feats, source = pipeline_data(params, args.artifacts)
    meta.update(data=f"{split.n_users} users x {split.n_items} items, {len(split.train)}/{len(split.valid)}/"
                f"{len(split.test)} train/valid/test pairs, text vectors {tuple(feats.shape)} ({source})",
                id_lr=hy_cfg.lr, batch=hy_cfg.batch_size, epochs=hy_cfg.epochs, patience=hy_cfg.patience,
                seeds=args.seeds)
    if mf_cfg.lr != hy_cfg.lr:
        print(f"note: mf_bpr lr {mf_cfg.lr} != text_hybrid lr {hy_cfg.lr}; the ID rate is text_hybrid's")
    print(meta["data"], flush=True)
    seeds = args.seeds
    eval_cfg, test_cfg = EvalConfig(ks=(10,)), params.evaluation

    rows = []
    arms = {**ARMS, **(EXTRA_ARMS if args.extra else {})}
    for seed in seeds:  # the training seed (init, shuffling, negatives); the split stays the pipeline's
        mf_s, hy_s = mf_cfg.model_copy(update={"seed": seed}), hy_cfg.model_copy(update={"seed": seed})
        mf, row = run_arm("mf_bpr", "mf_bpr", split, feats, mf_s, eval_cfg, test_cfg)
        rows.append({**row, "seed": seed})
        for name, (init, rate, warm) in arms.items():
            text_lr = hy_s.lr if rate == "id" else hy_s.text_lr
            _, row = run_arm(name, "text_hybrid", split, feats, hy_s, eval_cfg, test_cfg, init=init, text_lr=text_lr,
                             warm_from=mf if warm else None)
            rows.append({**row, "seed": seed})

    pm = None
    mpath = ROOT / "metrics" / "pretrain.json"
    if not args.smoke and mpath.exists():
        pm = {k: v["test"]["ndcg@10"] for k, v in json.loads(mpath.read_text()).items()}
    meta.update(seconds=time.perf_counter() - t_start, load_after=os.getloadavg()[0])
    md = markdown(meta, rows, pm)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"hybrid_ablation_{meta['date'][:10]}{'_smoke' if args.smoke else ''}"
    (args.out / f"{stem}.md").write_text(md)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "arms": rows, "pipeline_metrics": pm},
                                                      indent=1) + "\n")
    print(f"wrote {args.out / stem}.md and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
