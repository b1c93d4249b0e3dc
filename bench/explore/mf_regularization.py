"""Does MF-BPR (and the hybrid warm-started from it) gain from weight decay? Issue 12's warm goal (>= 0.30).

Trains MF-BPR with params.yaml's pretrain config updated by each spec (key=value,...), then the text hybrid
warm-started from it (frozen LM, params.yaml's hybrid config plus the same weight_decay), per seed, on the
pipeline's split and text embeddings (artifacts/ of `make run`). Prints valid / test NDCG@10 of both.

    .venv/bin/python bench/explore/mf_regularization.py --seeds 2020,2021,2022 weight_decay=0 weight_decay=1e-5
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rrec_core.artifacts import ItemTextEmbeddings, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, load_params  # noqa: E402
from rrec_core.evaluation.ranking import evaluate_model  # noqa: E402
from rrec_core.training.loop import build_model, train_recommender, warm_start_from  # noqa: E402

INTS = ("embedding_dim", "batch_size", "epochs", "patience")


def parse(spec: str) -> dict:
    kw = dict(kv.split("=") for kv in spec.split(",")) if spec else {}
    return {k: (int(v) if k in INTS else float(v)) for k, v in kw.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--seeds", default="2020")
    ap.add_argument("--no-hybrid", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    p = load_params("params.yaml")
    split = ValidatedData.load(Path("artifacts/validated_interactions")).split
    feats = ItemTextEmbeddings.load(Path("artifacts/item_text_embeddings")).emb.embeddings
    ev = EvalConfig(ks=(10,))

    def ndcg(m, part):
        return evaluate_model(m, split, part, ev)["ndcg@10"]

    print("| spec | seed | MF valid | MF test | MF epochs, s | hybrid valid | hybrid test | hybrid best epoch |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for spec in args.specs:
        for seed in (int(s) for s in args.seeds.split(",")):
            upd = {**parse(spec), "seed": seed}
            cfg = p.pretrain.mf_bpr.model_copy(update=upd)
            t0 = time.perf_counter()
            mf = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, p.evaluation, progress=False)
            row = (f"| {spec} | {seed} | {ndcg(mf.model, 'valid'):.4f} | {ndcg(mf.model, 'test'):.4f} | "
                   f"{mf.best_epoch}, {time.perf_counter() - t0:.0f} s |")
            if not args.no_hybrid:
                hcfg = p.pretrain.text_hybrid.model_copy(update={k: v for k, v in upd.items() if k != "embedding_dim"})
                h = warm_start_from(build_model("text_hybrid", split, hcfg, feats), mf.model)
                hr = train_recommender(h, split, hcfg, p.evaluation, progress=False, warm_start=True, text_lr=hcfg.text_lr)
                row += f" {ndcg(hr.model, 'valid'):.4f} | {ndcg(hr.model, 'test'):.4f} | {hr.best_epoch} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
