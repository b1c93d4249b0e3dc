"""The new-item guard's trade-off: how much promotion each setting leaves the text attacks, and what it costs
genuinely new items.

Each setting is LEVEL:LEVEL_QUANTILE:REST_QUANTILE, LEVEL fix (every new item at that quantile of the trained
items' level along the users' mean direction) or cap (at most at it), REST_QUANTILE the taste part's norm cap
("none": no cap). For each:
  - attacks: rrec_core.evaluation.text_attacks on the pretrained text hybrid of artifacts/ (`make run`), the
    cold targets unguarded and guarded, every attack searching against the guarded serving;
  - --cold: the cold-start stage's treated hybrid (params.yaml's settings, trained once here) scored with the
    setting, on all / warm / cold test pairs.

    .venv/bin/python bench/explore/new_item_guard.py fix:0.5:0.9 cap:0.75:0.9 cap:0.9:0.9
    .venv/bin/python bench/explore/new_item_guard.py --cold fix:0.5:0.9 cap:0.75:0.9 cap:0.9:0.9
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rrec_core.artifacts import ItemTextEmbeddings, TrainedModels, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, NewItemGuardConfig, load_params  # noqa: E402


def setting(spec: str) -> NewItemGuardConfig:
    level, q, rest = spec.split(":")
    if level not in ("fix", "cap"):
        raise SystemExit(f"{spec}: LEVEL is fix or cap")
    return NewItemGuardConfig(level_quantile=float(q), cap_level=level == "cap",
                              rest_quantile=None if rest == "none" else float(rest))


def attacks(specs: list[str], art: Path, params) -> None:
    from rrec_core.evaluation.text_attacks import evaluate_text_attacks
    from rrec_core.reporting.text_attacks import guard_shares

    data = ValidatedData.load(art / "validated_interactions")
    text = ItemTextEmbeddings.load(art / "item_text_embeddings")
    model = TrainedModels.load(art / "pretrained_recommender").models["text_hybrid"]
    print("| setting | attack | unguarded HR@50 clean → attacked | guarded HR@50 clean → attacked (sanitized) "
          "| promotion kept (with sanitizer) | test NDCG@10 attacked |")
    print("|---|---|---|---|---|---:|")
    for spec in specs:
        r, _ = evaluate_text_attacks(data.split, data.items, text.emb.config, {"pretrained/text_hybrid": model},
                                     params.text_attacks, text.emb.config["text_template"], None, setting(spec))
        base = r.models["pretrained/text_hybrid (targets cold)"]
        guarded = r.models["pretrained/text_hybrid (targets cold, guarded)"]
        shares = guard_shares(r)
        for kind, a in guarded.attacks.items():
            b, s = base.attacks[kind], shares[kind]
            kept = " / ".join("n/a" if v is None else f"{100 * v:.0f}%" for v in (s["guard"], s["guard+sanitizer"]))
            print(f"| {spec} | {kind} | {base.clean.hr50:.4f} → {b.undefended.hr50:.4f} | {guarded.clean.hr50:.4f} → "
                  f"{a.undefended.hr50:.4f} ({a.sanitized.hr50:.4f}) | {kept} | {a.test_ndcg10:.4f} |", flush=True)


def cold_cost(specs: list[str], art: Path, params) -> None:
    from rrec_core.data.cold import hold_out_items
    from rrec_core.evaluation.cold_start import cold_start_metrics, model_scorer
    from rrec_core.training.loop import build_model, train_recommender, warm_start_from

    data = ValidatedData.load(art / "validated_interactions")
    text = ItemTextEmbeddings.load(art / "item_text_embeddings").emb.embeddings
    cs = hold_out_items(data.split, params.cold_start.item_share, params.cold_start.seed, None)
    ev = EvalConfig(ks=(10,))
    mf_cfg = params.pretrain.mf_bpr
    mf = train_recommender(build_model("mf_bpr", cs.split, mf_cfg), cs.split, mf_cfg, ev).model
    h = params.pretrain.text_hybrid.model_copy(update={"cold_start": True, "id_dropout": params.cold_start.id_dropout})
    model = build_model("text_hybrid", cs.split, h, text)
    warm_start_from(model, mf)
    model = train_recommender(model, cs.split, h, ev, warm_start=True, text_lr=h.text_lr).model
    model.eval()
    print("| setting | warm NDCG@10 | cold NDCG@10 | cold Recall@20 | all NDCG@10 |")
    print("|---|---:|---:|---:|---:|")
    for spec in ["unguarded", *specs]:
        if spec != "unguarded":
            g = setting(spec)
            model.fit_new_item_guard(g.rest_quantile, g.level_quantile, g.cap_level)
        r = cold_start_metrics(model_scorer(model), cs, (10, 20))
        print(f"| {spec} | {r['warm']['ndcg@10']:.4f} | {r['cold']['ndcg@10']:.4f} | {r['cold']['recall@20']:.4f} | "
              f"{r['all']['ndcg@10']:.4f} |", flush=True)
        model.set_new_item_guard(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="LEVEL:LEVEL_QUANTILE:REST_QUANTILE, e.g. fix:0.5:0.9")
    ap.add_argument("--cold", action="store_true", help="the cost on the cold-start stage's new items instead")
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args()
    params = load_params(args.params)
    (cold_cost if args.cold else attacks)(args.settings, Path(args.artifacts), params)


if __name__ == "__main__":
    main()
