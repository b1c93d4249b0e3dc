"""Does tuning the language model's top layers pay? The text hybrid with 0, 1 or 2 tuned MiniLM layers.

The tuned variants train the layers from summed feature gradients (`lm_update_every`, LaggedTower);
`--end-to-end` adds the variants that run them on every batch (a quarter of an hour per epoch on 2
cores).

Runs the pipeline's own pretraining (`rrec_core.pipeline.pretrain`: MF-BPR, then the hybrid warm-started
from it) for each variant of `pretrain.text_hybrid` and prints test NDCG@10 / Recall@10, the best
epoch, epochs run and seconds per epoch side by side (docs/cold_start.md has the cold-item side):

    python bench/lm_finetune.py            # the variants below
    python bench/lm_finetune.py --smoke    # 2 epochs, 2 variants: proves the script runs

Needs artifacts/validated_interactions and artifacts/item_text_embeddings (`make run`).
Writes bench/results/lm_finetune_<cpu|gpu>_<date>.md and .json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from rrec_core import pipeline  # noqa: E402
from rrec_core.artifacts import ItemTextEmbeddings, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, load_params  # noqa: E402

VARIANTS = {  # name -> pretrain.text_hybrid overrides
    "frozen LM (default)": {"lm_finetune_layers": 0},
    # one update of the tuned layers per N steps from summed feature gradients (LaggedTower)
    "top 1 layer, lagged 10 steps, lm_lr 1e-4": {"lm_finetune_layers": 1, "lm_lr": 1e-4, "lm_update_every": 10},
    "top 1 layer, lagged 10 steps, lm_lr 1e-3": {"lm_finetune_layers": 1, "lm_lr": 1e-3, "lm_update_every": 10},
    "top 1 layer, lagged 40 steps, lm_lr 1e-3": {"lm_finetune_layers": 1, "lm_lr": 1e-3, "lm_update_every": 40},
    "top 2 layers, lagged 10 steps, lm_lr 1e-4": {"lm_finetune_layers": 2, "lm_lr": 1e-4, "lm_update_every": 10},
}
END_TO_END = {  # every step through the tuned layers: a GPU's variants (--end-to-end)
    "top 1 layer tuned, lm_lr 1e-5": {"lm_finetune_layers": 1, "lm_lr": 1e-5},
    "top 1 layer tuned, lm_lr 1e-4": {"lm_finetune_layers": 1, "lm_lr": 1e-4},
    "top 2 layers tuned, lm_lr 1e-5": {"lm_finetune_layers": 2, "lm_lr": 1e-5},
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default=None, help="run only the variants whose name contains this text")
    ap.add_argument("--epochs", type=int, default=None, help="the hybrid's epoch limit (default: params.yaml)")
    ap.add_argument("--end-to-end", action="store_true",
                    help="also the variants that run the tuned layers every step (slow without a GPU)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    art = Path(args.artifacts)
    data = ValidatedData.load(art / "validated_interactions")
    text = ItemTextEmbeddings.load(art / "item_text_embeddings")
    params = load_params(args.params)
    variants = (dict(list(VARIANTS.items())[:2]) if args.smoke
                else {**VARIANTS, **(END_TO_END if args.end_to_end else {})})
    if args.only:
        variants = {k: v for k, v in variants.items() if args.only in k}
    rows = []
    for name, update in variants.items():
        pcfg = params.pretrain.model_copy(update={"models": ("mf_bpr", "text_hybrid")})
        epochs = {"epochs": 2} if args.smoke else ({"epochs": args.epochs} if args.epochs else {})
        hyb = pcfg.text_hybrid.model_copy(update={**update, **epochs})
        mf = pcfg.mf_bpr.model_copy(update={"epochs": 2} if args.smoke else {})
        pcfg = pcfg.model_copy(update={"text_hybrid": hyb, "mf_bpr": mf})
        t0 = time.perf_counter()
        trained = pipeline.pretrain(data, text, pcfg, progress=False)
        ev = pipeline.evaluate_pretrained(trained, data, EvalConfig(ks=(10,)))
        hist = trained.histories["text_hybrid"]
        epoch_s = [h["train_seconds"] for h in hist if h["epoch"] > 0]
        m = ev.result.models["text_hybrid"]
        rows.append({"variant": name, **update, "test_ndcg@10": m.test["ndcg@10"], "test_recall@10": m.test["recall@10"],
                     "mf_test_ndcg@10": ev.result.models["mf_bpr"].test["ndcg@10"], "best_epoch": m.best_epoch,
                     "epochs_run": len(epoch_s), "seconds_per_epoch": sum(epoch_s) / max(len(epoch_s), 1),
                     "seconds_total": time.perf_counter() - t0})
        print(rows[-1], flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    today = dt.date.today().isoformat()
    lines = [f"# Tuned LM layers in the text hybrid — {device}, {today}", "",
             f"Pipeline pretraining on {art}/validated_interactions (MF-BPR, then the hybrid warm-started from it), "
             f"encoder {params.encoder.model}; hybrid epoch limit {args.epochs or 'params.yaml'}; torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
             "| variant | hybrid test NDCG@10 | Recall@10 | MF-BPR NDCG@10 | best epoch | epochs run | s / epoch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['test_ndcg@10']:.4f} | {r['test_recall@10']:.4f} | {r['mf_test_ndcg@10']:.4f} "
                     f"| {r['best_epoch']} | {r['epochs_run']} | {r['seconds_per_epoch']:.1f} |")
    md = "\n".join(lines) + "\n"
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"lm_finetune_{device}_{today}" + ("_smoke" if args.smoke else "") + (f"_{args.epochs}ep" if args.epochs else "")
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
