"""Why some adversaries make a model less robust: the score gaps a ranking attack has to close.

A held-out positive stays in the top 10 under attack only while its score beats the 10th best of the
user's other candidates (items outside the training history) by more than the perturbation can move.
This script fine-tunes the pipeline's pretrained MF-BPR for a few epochs with each adversary (the last
epoch kept, no model selection), then prints per model, on the validation pairs:

- clean and worst-case validation NDCG@10 (pairwise, listwise and margin PGD at the radius `--eps`);
- the median gap s_pos − s_10th (the 10th best other candidate), divided by the user's norm: in
  units of how far a unit perturbation of an item row moves that user's score;
- the median spread s_1st − s_10th of the top 10 other candidates / user norm: how tightly packed the
  top of the candidate list is, which is what a perturbation reorders.

    python bench/score_gaps.py                  # uniform vs hard negatives vs catalogue listwise
    python bench/score_gaps.py --epochs 2       # shorter

Prints a table and writes bench/results/score_gaps_<cpu|gpu>_<date>.md.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from rrec_core.artifacts import TrainedModels, ValidatedData  # noqa: E402
from rrec_core.attacks import Attack  # noqa: E402
from rrec_core.config import EvalConfig, load_params  # noqa: E402
from rrec_core.evaluation.attacked import held_out  # noqa: E402
from rrec_core.evaluation.ranking import _batch_mask, _sorted_pairs, evaluate_model  # noqa: E402
from rrec_core.training.adversarial import AdversarialLoss, validation_robustness  # noqa: E402
from rrec_core.training.loop import train_recommender  # noqa: E402

VARIANTS = {
    "VAT radii, uniform negative (the default)": {},
    "VAT radii, hard negatives 20 (adversarial term)": {"hard_negatives": 20},
    "catalogue listwise adversary, 3 steps": {"adversary": "listwise_catalogue", "steps": 3,
                                               "user_radius": "uniform"},
}


def gaps(model, split) -> tuple[float, float]:
    """Median (s_pos - s_10th other) / |u| over validation pairs and median (s_1st - s_10th) / |u| over users."""
    target, exclude = held_out(split, "valid")
    tgt = _sorted_pairs(torch.as_tensor(target).reshape(-1, 2))
    exc = _sorted_pairs(torch.cat([torch.as_tensor(e).reshape(-1, 2) for e in exclude]))
    users = torch.unique(tgt[:, 0])
    with torch.no_grad():
        U = model.user_vectors(users)
        S = U @ model.item_vectors().T
        hist = _batch_mask(exc, users, split.n_users, split.n_items)
        pos = _batch_mask(tgt, users, split.n_users, split.n_items)
        others = S.masked_fill(hist | pos, float("-inf")).topk(10, dim=1).values
        unorm = U.norm(dim=1)
        row, col = pos.nonzero(as_tuple=True)
        pair_gap = (S[row, col] - others[row, -1]) / unorm[row]
        spread = (others[:, 0] - others[:, -1]) / unorm
    return pair_gap.median().item(), spread.median().item()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--eps", type=float, default=1.0, help="training and worst-case radius (absolute, L2)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    art = Path(args.artifacts)
    split = ValidatedData.load(art / "validated_interactions").split
    pre = TrainedModels.load(art / "pretrained_recommender").models["mf_bpr"]
    base = load_params(args.params).adversarial.model_copy(update={"gan_weighting": False, "eps": args.eps})
    base = base.model_copy(update={"train": base.train.model_copy(update={"epochs": args.epochs, "patience": args.epochs})})
    ev10 = EvalConfig(ks=(10,))
    sel = Attack(eps=args.eps, steps=base.select_attack_steps, norm="l2")
    rows = []

    def describe(name, model, cfg):
        clean = evaluate_model(model, split, "valid", ev10)["ndcg@10"]
        worst = validation_robustness(model, split, cfg.model_copy(update={"select_on": "worst_case"}), sel, ev10)
        g, s = gaps(model, split)
        rows.append(f"| {name} | {clean:.4f} | {worst:.4f} | {g:.3f} | {s:.3f} | "
                    f"{model.user_embedding.weight.norm(dim=1).mean():.2f} / {model.item_vectors().norm(dim=1).mean():.2f} |")
        print(rows[-1], flush=True)

    describe("none (pretrained)", pre, base)
    for name, update in VARIANTS.items():
        cfg = base.model_copy(update=update)
        model = copy.deepcopy(pre)
        epoch = iter(range(10**9))
        train_recommender(model, split, cfg.train, ev10, progress=False, warm_start=False,
                          batch_loss=AdversarialLoss(cfg, history=torch.as_tensor(split.train), n_users=split.n_users),
                          valid_score=lambda m: {"score": float(next(epoch))})  # the last epoch is kept
        describe(f"{name}, {args.epochs} epochs", model, cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    today = dt.date.today().isoformat()
    text = "\n".join([
        f"# Score gaps after adversarial fine-tuning — {device}, {today}", "",
        f"Pretrained MF-BPR from {art}; params.yaml adversarial section, eps {args.eps} (absolute, L2), GAN weights off, "
        f"{args.epochs} epochs, last epoch kept; validation pairs; torch {torch.__version__}.", "",
        "| model | clean NDCG@10 | worst case | median (s_pos − s_10th) / ‖u‖ | median (s_1st − s_10th) / ‖u‖ "
        "| user / item norm |", "|---|---:|---:|---:|---:|---|", *rows]) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"score_gaps_{device}_{today}.md").write_text(text)


if __name__ == "__main__":
    main()
