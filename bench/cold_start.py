"""Item cold start on the pipeline's data: the treatment's settings and other draws of cold items.

Runs rrec_core.evaluation.cold_start (MF-BPR, the text hybrid with and without the cold-start
treatment, random, popularity, text-kNN) for each setting of the treatment and each seed of the cold
item draw, and prints warm / cold NDCG@10 and Recall@20 side by side (docs/cold_start.md):

    python bench/cold_start.py                 # settings x seeds below
    python bench/cold_start.py --smoke         # 1 setting, 1 seed, few epochs: proves the script runs

Needs artifacts/validated_interactions and artifacts/item_text_embeddings (`make run`).
Writes bench/results/cold_start_<date>.md and .json.
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
from rrec_core.artifacts import ItemTextEmbeddings, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, load_params  # noqa: E402
from rrec_core.evaluation.cold_start import evaluate_cold_start  # noqa: E402

SETTINGS = {  # name -> (cold_start.id_dropout, pretrain.text_hybrid.cold_map_reg)
    "id dropout 0, ridge 1": (0.0, 1.0),
    "id dropout 0.2, ridge 1": (0.2, 1.0),
    "id dropout 0.2, ridge 10": (0.2, 10.0),
}
SEEDS = (3, 11, 29)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    art = Path(args.artifacts)
    data = ValidatedData.load(art / "validated_interactions")
    text = ItemTextEmbeddings.load(art / "item_text_embeddings").emb.embeddings
    params = load_params(args.params)
    pretrain = params.pretrain
    settings, seeds = (dict(list(SETTINGS.items())[:1]), SEEDS[:1]) if args.smoke else (SETTINGS, SEEDS)
    if args.smoke:
        pretrain = pretrain.model_copy(update={
            "mf_bpr": pretrain.mf_bpr.model_copy(update={"epochs": 2}),
            "text_hybrid": pretrain.text_hybrid.model_copy(update={"epochs": 2})})
    rows = []
    for name, (dropout, reg) in settings.items():
        pcfg = pretrain.model_copy(update={"text_hybrid": pretrain.text_hybrid.model_copy(update={"cold_map_reg": reg})})
        for seed in seeds:
            cfg = params.cold_start.model_copy(update={"seed": seed, "id_dropout": dropout})
            t0 = time.perf_counter()
            result, timings = evaluate_cold_start(data, text, pcfg, cfg, EvalConfig(ks=(10, 20)))
            for model, m in result.models.items():
                rows.append({"setting": name, "seed": seed, "model": model, "warm_ndcg@10": m.warm["ndcg@10"],
                             "cold_ndcg@10": m.cold["ndcg@10"], "cold_recall@20": m.cold["recall@20"],
                             "all_ndcg@10": m.all["ndcg@10"], "n_cold_test_pairs": result.n_cold_test_pairs})
            print(f"{name}, seed {seed}: {time.perf_counter() - t0:.0f}s", flush=True)
    today = dt.date.today().isoformat()
    lines = [f"# Item cold start — cpu, {today}", "",
             f"Data {art}/validated_interactions; {params.cold_start.item_share:.0%} of the items held out "
             f"(half validation, half test), seeds {', '.join(map(str, seeds))}; every item ranked, train and "
             "validation masked. torch " + torch.__version__ + ".", "",
             "| setting | seed | model | warm NDCG@10 | cold NDCG@10 | cold Recall@20 | all NDCG@10 |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['seed']} | {r['model']} | {r['warm_ndcg@10']:.4f} | "
                     f"{r['cold_ndcg@10']:.4f} | {r['cold_recall@20']:.4f} | {r['all_ndcg@10']:.4f} |")
    text_md = "\n".join(lines) + "\n"
    print(text_md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"cold_start_{today}" + ("_smoke" if args.smoke else "")
    (out / f"{stem}.md").write_text(text_md)
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
