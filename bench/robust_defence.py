"""Adversarial fine-tuning variants judged by the worst case of the attack suite (docs/robustness.md).

Fine-tunes the pipeline's pretrained MF-BPR (artifacts/pretrained_recommender, from `make run`) with
each variant of params.yaml's `adversarial` section (GAN weights off, so the variants differ only in
the adversary and the selection), then evaluates every model at ε = 0.5 absolute and 0.25 relative with
the pipeline's suite (params.yaml robustness) at those radii: pairwise FGSM / PGD-10, listwise, margin and
margin@1 PGD-100 x 5 restarts in the L2 ball, listwise and margin PGD-30 x 2 in the L-inf ball (ε x
linf_scale), each user at its worst iterate; it prints
clean NDCG@10, the per-user worst case, the strongest single attack and the norms, side by side:

    python bench/robust_defence.py            # the variants below
    python bench/robust_defence.py --smoke    # tiny epochs: proves the script runs
    python bench/robust_defence.py --only VAT  # the variants whose name matches the regex "VAT"
    python bench/robust_defence.py --only TRADES --epochs 6 --history  # and print each epoch's validation
    python bench/robust_defence.py --pretrain-set weight_decay=1e-5 --only VAT  # pretrained again with an override first

Writes bench/results/robust_defence_<cpu|gpu>_<date>[_<only>].md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from orchestration.cli import parse_overrides  # noqa: E402
from rrec_core.artifacts import ItemTextEmbeddings, TrainedModels, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, load_params, resolve_config  # noqa: E402
from rrec_core.evaluation.robustness import evaluate_robustness  # noqa: E402
from rrec_core.pipeline import pretrain  # noqa: E402
from rrec_core.training.adversarial import adversarial_finetune  # noqa: E402

VARIANTS = {
    "PGD-AT eps 0.5, select on pairwise PGD": {"user_radius": "uniform", "eps": 0.5, "select_on": "bpr"},
    "PGD-AT eps 0.5, select on worst case": {"user_radius": "uniform", "eps": 0.5, "select_on": "worst_case"},
    "PGD-AT eps 0.25 relative, select on worst case": {"user_radius": "uniform", "eps": 0.25, "scale": "relative", "select_on": "worst_case"},
    "PGD-AT eps 1.0, select on worst case": {"user_radius": "uniform", "eps": 1.0, "select_on": "worst_case"},
    "VAT radii eps 0.25 relative, select on worst case": {"eps": 0.25, "scale": "relative",
                                                          "user_radius": "vulnerability", "select_on": "worst_case"},
    "PGD-AT eps 0.4 relative, select on worst case": {"user_radius": "uniform", "eps": 0.4, "scale": "relative", "select_on": "worst_case"},
    "listwise adversary eps 0.25, 3 steps, select on worst case": {"eps": 0.25, "steps": 3, "adversary": "listwise",
                                                                   "select_on": "worst_case"},
    "VAT radii eps 1.0, select on worst case": {"eps": 1.0, "user_radius": "vulnerability", "select_on": "worst_case"},
    "VAT radii eps 2.0, select on worst case": {"eps": 2.0, "user_radius": "vulnerability", "select_on": "worst_case"},
    "PGD-AT eps 1.5, select on worst case": {"user_radius": "uniform", "eps": 1.5, "select_on": "worst_case"},
    "PGD-AT eps 2.0, select on worst case": {"user_radius": "uniform", "eps": 2.0, "select_on": "worst_case"},
    "VAT radii eps 1.5, select on worst case": {"eps": 1.5, "user_radius": "vulnerability", "select_on": "worst_case"},
    "VAT radii eps 1.0, 10 steps, select on worst case": {"eps": 1.0, "steps": 10, "user_radius": "vulnerability",
                                                         "select_on": "worst_case"},
    "PGD-AT eps 1.5, clean weight 0.3, select on worst case": {"user_radius": "uniform", "eps": 1.5, "clean_weight": 0.3,
                                                              "select_on": "worst_case"},
    "catalogue listwise adversary eps 0.5, 3 steps, select on worst case": {
        "eps": 0.5, "steps": 3, "adversary": "listwise_catalogue", "select_on": "worst_case"},
    "catalogue listwise adversary eps 1.0, 3 steps, select on worst case": {
        "eps": 1.0, "steps": 3, "adversary": "listwise_catalogue", "select_on": "worst_case"},
    "TRADES catalogue KL eps 0.5, 3 steps, select on worst case": {
        "eps": 0.5, "steps": 3, "adversary": "trades", "select_on": "worst_case"},
    "TRADES catalogue KL eps 1.0, 3 steps, select on worst case": {
        "eps": 1.0, "steps": 3, "adversary": "trades", "select_on": "worst_case"},
    "VAT radii eps 1.0, hard negatives 20 (adversarial term)": {
        "eps": 1.0, "user_radius": "vulnerability", "hard_negatives": 20, "select_on": "worst_case"},
    "VAT radii eps 1.0, hard negatives 20 (both terms)": {
        "eps": 1.0, "user_radius": "vulnerability", "hard_negatives": 20, "hard_negatives_clean": True,
        "select_on": "worst_case"},
    "VAT radii eps 0.5, hard negatives 20 (adversarial term)": {
        "eps": 0.5, "user_radius": "vulnerability", "hard_negatives": 20, "select_on": "worst_case"},
}


def _sections(pairs: list[str], *sections: str) -> dict:
    """KEY=VALUE pairs as `rrec run --set` overrides of each of `sections` (e.g. pretrain.mf_bpr.KEY)."""
    return {f"{section}.{key}": value for key, value in parse_overrides(pairs).items() for section in sections}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--smoke", action="store_true", help="2 epochs, 2 variants: proves the script runs")
    ap.add_argument("--only", default=None, help="run only the variants whose name matches this regex")
    ap.add_argument("--model", default="mf_bpr", choices=("mf_bpr", "text_hybrid"), help="which pretrained model")
    ap.add_argument("--epochs", type=int, default=None, help="fine-tuning epoch limit (default: params.yaml)")
    ap.add_argument("--history", action="store_true", help="print each epoch's clean and worst-case validation")
    ap.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                    help="pretrain again with this override of pretrain.mf_bpr and pretrain.text_hybrid instead of loading")
    ap.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override of adversarial.train for every variant (e.g. weight_decay=1e-5)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    art = Path(args.artifacts)
    data = ValidatedData.load(art / "validated_interactions")
    split = data.split
    params = resolve_config(load_params(args.params), {
        **_sections(args.pretrain_set, "pretrain.mf_bpr", "pretrain.text_hybrid"),
        **_sections(args.finetune_set, "adversarial.train")})
    base = params.adversarial.model_copy(update={"gan_weighting": False, "models": (args.model,)})
    if args.pretrain_set:  # pretraining as the pipeline runs it (the hybrid warm-starts from the new MF-BPR)
        kinds = ("mf_bpr",) if args.model == "mf_bpr" else ("mf_bpr", "text_hybrid")
        text = ItemTextEmbeddings.load(art / "item_text_embeddings") if args.model == "text_hybrid" else None
        t0 = time.perf_counter()
        pre = pretrain(data, text, params.pretrain.model_copy(update={"models": kinds}), progress=False).models[args.model]
        print(f"pretrained {kinds} with {args.pretrain_set}: {time.perf_counter() - t0:.0f}s", flush=True)
    else:
        pre = TrainedModels.load(art / "pretrained_recommender").models[args.model]
    variants = dict(list(VARIANTS.items())[:2]) if args.smoke else VARIANTS
    if args.only:
        variants = {k: v for k, v in variants.items() if re.search(args.only, k)}
        if not variants:
            raise SystemExit(f"no variant name matches {args.only!r}: {list(VARIANTS)}")
    if args.smoke or args.epochs:
        epochs = 2 if args.smoke else args.epochs
        base = base.model_copy(update={"train": base.train.model_copy(update={"epochs": epochs})})
    models, rows = {"none (pretrained)": pre}, {}
    for name, update in variants.items():
        t0 = time.perf_counter()
        res = adversarial_finetune(pre, split, base.model_copy(update=update), EvalConfig(ks=(10,)), progress=False)
        rows[name] = {"best_epoch": res.best_epoch, "seconds": time.perf_counter() - t0}
        models[name] = res.model
        print(f"{name}: best epoch {res.best_epoch}, {rows[name]['seconds']:.0f}s", flush=True)
        if args.history:
            for h in res.history:
                print(f"  epoch {h['epoch']:3d}  loss {h['loss']:.4f}  valid clean NDCG@10 {h['valid_ndcg@10']:.4f}"
                      f"  valid worst case {h['valid_ndcg@10_attacked']:.4f}", flush=True)
    # the pipeline's suite (params.yaml robustness) at the table's radii: the strong budget where the pipeline
    # spends it (L2 headline radii), its ranking attacks in both balls; no per-user attacker
    rcfg = params.robustness.model_copy(update={"eps_absolute": (0.5,), "eps_relative": (0.25,), "steps": (1, 10),
                                                 "per_user_attack": False})
    if args.smoke:
        rcfg = rcfg.model_copy(update={"ranking_steps": 5, "strong_steps": 5, "strong_restarts": 1})
    result, _ = evaluate_robustness(models, split, rcfg, EvalConfig(ks=(10,)), progress=False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    today = dt.date.today().isoformat()
    lines = [f"# Adversarial fine-tuning judged by the worst case — {device}, {today}", "",
             f"Pretrained {args.model} " + (f"retrained with {args.pretrain_set}" if args.pretrain_set else f"from {art}")
             + (f"; fine-tuning with {args.finetune_set}" if args.finetune_set else "") + f"; config {args.params} with the variant's overrides, GAN weights off; "
             f"attack suite: params.yaml robustness at these radii; "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
             f"| fine-tuning | best epoch | clean NDCG@10 | worst case L2 ε=0.5 abs (kept) | worst case L2 ε=0.25 rel (kept) "
             f"| L∞ ε={0.5 * rcfg.linf_scale:g} abs | L∞ ε={0.25 * rcfg.linf_scale:g} rel "
             "| strongest single attack (L2 abs) | user / item norm |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, m in result.models.items():
        # one worst case per (ball, scale): before 2026-12-08 this table keyed them by scale alone and so printed
        # the L-inf ones under the L2 headings (docs/robustness.md)
        w = {(x.norm, x.scale): x for x in m.worst_case}
        a, r, ai, ri = w["l2", "absolute"], w["l2", "relative"], w["linf", "absolute"], w["linf", "relative"]
        lines.append(f"| {name} | {rows.get(name, {}).get('best_epoch', '–')} | {m.clean['ndcg@10']:.4f} | "
                     + " | ".join(f"{x.ndcg:.4f} ({100 * x.ndcg_kept:.1f}%)" for x in (a, r, ai, ri))
                     + f" | {a.strongest_single} | {m.norms.user.mean:.2f} / {m.norms.item.mean:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("_smoke" if args.smoke else "") + "".join(f"_{re.sub(r'[^A-Za-z0-9.]+', '_', o)}" for o in args.pretrain_set + args.finetune_set) + ("" if args.model == "mf_bpr" else f"_{args.model}") + (f"_{re.sub(r'[^A-Za-z0-9.]+', '_', args.only)}" if args.only else "")
    (out / f"robust_defence_{device}_{today}{suffix}.md").write_text(text)


if __name__ == "__main__":
    main()
