"""Wall time of the adversarial stages with the compiled rrec ops vs the PyTorch reference.

Runs `adversarial_train` (PGD-AT fine-tuning of every pretrained model, robust selection) and
`evaluate_robustness` (the whole attack grid on pretrained and adversarial models) twice on one
device, in one process: once with the compiled kernels, once routed to rrec_core.ops.reference.
Needs the artifacts of a finished run (validated_interactions, pretrained_recommender, gan_samples:
`adversarial.gan_weighting` weights users by the GAN-trained detector):

    make run                                   # or: rrec run --select 'gan_samples pretrained_recommender'
    python bench/bench_adversarial_stage.py    # CUDA when available
    python bench/bench_adversarial_stage.py --device cpu

Writes bench/results/adversarial_stage_<device>_<date>.{json,md}. The two passes must give the
same test metrics (to float rounding): the timing compares the same work.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
import rrec_core.ops as ops  # noqa: E402
from rrec_core.artifacts import GanSamples, TrainedModels, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, load_params  # noqa: E402
from rrec_core.ops import _loader  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(backend: str, device: torch.device, data, pretrained, gan, cfg) -> dict:
    from rrec_core.evaluation.robustness import evaluate_robustness
    from rrec_core.pipeline import adversarial_train

    compiled = backend == "rrec"
    saved = dict(_loader.KERNELS)
    _loader.KERNELS[device.type] = compiled and saved[device.type]
    try:
        adv_cfg = cfg.adversarial.model_copy(deep=True)
        adv_cfg.train.device = device.type
        _sync(device)
        t0 = time.perf_counter()
        adv = adversarial_train(pretrained, data, None, adv_cfg, progress=False, gan=gan)
        _sync(device)
        t_adv = time.perf_counter() - t0
        epochs = {k: len(h) for k, h in adv.histories.items()}
        models = {f"pretrained/{k}": m.to(device) for k, m in pretrained.models.items()}
        models.update({f"adversarial/{k}": m.to(device) for k, m in adv.models.items()})
        t0 = time.perf_counter()
        result, _ = evaluate_robustness(models, data.split, cfg.robustness, cfg.evaluation, progress=False)
        _sync(device)
        t_rob = time.perf_counter() - t0
    finally:
        _loader.KERNELS.update(saved)
    clean = {k: r.clean["ndcg@10"] for k, r in result.models.items()}

    def strongest(attacks):  # the most steps of L2 at the training radius (PGD-100, eps 0.5 by default)
        rows = [a for a in attacks if a.norm == "l2" and a.scale == "absolute" and a.eps == cfg.adversarial.eps]
        return max(rows or attacks, key=lambda a: a.steps).metrics["ndcg@10"]

    pgd100 = {k: strongest(r.attacks) for k, r in result.models.items()}
    return dict(backend=backend, adversarial_s=round(t_adv, 2), robustness_s=round(t_rob, 2),
                epochs=epochs, attacks=len(result.grid), clean_ndcg10=clean,
                pgd100_eps05_ndcg10=pgd100)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if not ops.backends().get(device.type):
        sys.exit(f"rrec ops have no compiled {device.type} kernels: build the extension first")
    cfg = load_params(args.params)
    art = Path(args.artifacts)
    data = ValidatedData.load(art / "validated_interactions")
    pretrained = TrainedModels.load(art / "pretrained_recommender")
    gan = GanSamples.load(art / "gan_samples") if cfg.adversarial.gan_weighting else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"

    # one untimed pass of the evaluation primitives so CUDA context and kernels load first
    warm = {k: m.to(device) for k, m in pretrained.models.items()}
    from rrec_core.evaluation.ranking import evaluate_model
    for m in warm.values():
        evaluate_model(m, data.split, "valid", EvalConfig(ks=(10,)))
    runs = [run_once(b, device, data, pretrained, gan, cfg) for b in ("rrec", "reference")]
    for r in runs:
        print(f"{r['backend']:9s}: adversarial_train {r['adversarial_s']:7.2f} s (epochs {r['epochs']}), "
              f"evaluate_robustness {r['robustness_s']:7.2f} s ({r['attacks']} attacks x "
              f"{len(r['clean_ndcg10'])} models)", flush=True)
    today = dt.date.today().isoformat()
    meta = dict(device=device.type, device_name=name, date=today, torch=torch.__version__,
                backends=ops.backends(), threads=torch.get_num_threads())
    stem = f"adversarial_stage_{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-').lower()}_{today}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(dict(meta=meta, runs=runs), indent=1))
    lines = [f"# Adversarial stages, compiled ops vs reference — {name} ({today})", "",
             f"torch {meta['torch']}; data {cfg.data.path}; config {args.params} (gan_weighting "
             f"{cfg.adversarial.gan_weighting}); one process, same seeds.", "",
             "| ops | adversarial_train s | evaluate_robustness s | epochs | "
             "clean NDCG@10 (adv MF / adv hybrid) | strongest L2 PGD at the training ε, NDCG@10 |",
             "|---|---:|---:|---|---|---|"]
    for r in runs:
        c, p = r["clean_ndcg10"], r["pgd100_eps05_ndcg10"]
        lines.append(f"| {r['backend']} | {r['adversarial_s']:.2f} | {r['robustness_s']:.2f} | "
                     f"{r['epochs']} | {c.get('adversarial/mf_bpr', float('nan')):.4f} / "
                     f"{c.get('adversarial/text_hybrid', float('nan')):.4f} | "
                     f"{p.get('adversarial/mf_bpr', float('nan')):.4f} / "
                     f"{p.get('adversarial/text_hybrid', float('nan')):.4f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / stem}.json and .md")


if __name__ == "__main__":
    main()
