"""The measured tables of docs/results.md, generated from the committed metrics files.

`python -m rrec_core.reporting.results_doc` rewrites every block between
`<!-- BEGIN generated: NAME -->` and `<!-- END generated: NAME -->` in docs/results.md from
metrics/*.json; `--check` exits 1 when a block differs (tests/test_docs.py runs it), so a number in
those tables cannot drift from the metrics the pipeline wrote.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Callable

from rrec_core.results import ColdStartResult, DistillationResult, PoisoningResult, PretrainResult, RobustnessResult

DOC = Path("docs/results.md")
RECBOLE_BPR = {"ndcg@10": 0.286, "recall@10": 0.239, "hit@10": 0.772, "mrr@10": 0.482}  # DESIGN.md anchor


def pretrain_table(metrics: Path) -> str:
    r = PretrainResult.from_json((metrics / "pretrain.json").read_text()).models
    keys = ("ndcg@10", "recall@10", "hit@10", "mrr@10")
    lines = ["| model | NDCG@10 | Recall@10 | Hit@10 | MRR@10 | best epoch |", "|---|---|---|---|---|---|",
             "| RecBole 1.2.1 BPR (anchor, DESIGN.md) | " + " | ".join(f"{RECBOLE_BPR[k]:.3f}" for k in keys) + " | |"]
    for name, m in r.items():
        lines.append(f"| rrec {name} | " + " | ".join(f"{m.test[k]:.4f}" for k in keys) + f" | {m.best_epoch} |")
    return "\n".join(lines)


def robustness_table(metrics: Path) -> str:
    r = RobustnessResult.from_json((metrics / "robustness.json").read_text())

    def worst(model, scale, eps):
        w = [w for w in model.worst_case if w.norm == "l2" and w.scale == scale and w.eps == eps]
        return f"{w[0].ndcg:.4f} | {100 * w[0].ndcg_kept:.1f}%" if w else "– | –"

    def pairwise(model, scale, eps):
        hits = [a for a in model.attacks if a.objective == "bpr" and a.norm == "l2" and a.scale == scale
                and a.eps == eps]
        return f"{min(a.metrics['ndcg@10'] for a in hits):.4f}" if hits else "–"

    lines = ["| model | clean NDCG@10 | worst case ε=0.5 abs | kept | pairwise PGD ε=0.5 abs | worst case ε=0.25 rel "
             "| kept | pairwise PGD ε=0.25 rel | mean user / item norm |", "|---|---|---|---|---|---|---|---|---|"]
    for name, m in r.models.items():
        lines.append(f"| {name} | {m.clean['ndcg@10']:.4f} | {worst(m, 'absolute', 0.5)} | {pairwise(m, 'absolute', 0.5)} "
                     f"| {worst(m, 'relative', 0.25)} | {pairwise(m, 'relative', 0.25)} "
                     f"| {m.norms.user.mean:.2f} / {m.norms.item.mean:.2f} |")
    per_user = {name: {(t.norm, t.scale, t.eps): t.ndcg_kept for t in m.per_user} for name, m in r.models.items()}
    radii = sorted({k for v in per_user.values() for k in v if k[0] == "l2"}, key=lambda k: (k[1], k[2]))
    if radii:
        lines += ["", "The per-user attacker (each user attacked alone, every item row's budget against it; "
                  "rrec_core.attacks.targeted), NDCG@10 kept, L2:", "",
                  "| model | " + " | ".join(f"ε={e:g} {'abs' if s == 'absolute' else 'rel'}" for _, s, e in radii) + " |",
                  "|---|" + "---:|" * len(radii)]
        for name, kept in per_user.items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * kept[k]:.1f}%" if k in kept else "–" for k in radii) + " |")
    return "\n".join(lines)


def poisoning_table(metrics: Path) -> str:
    r = PoisoningResult.from_json((metrics / "poisoning.json").read_text())
    names = {"undefended": "undefended", "gan_ft": "GAN-weighted fine-tuning only",
             "robust": "robust fine-tuning only (no detection)", "defended": "screen + GAN weights"}
    lines = ["| attack | arm | screen recall / precision | stealth AUC | pretrained HR@10 / HR@50 | "
             "adversarial HR@10 / HR@50 | pretrained shift | adversarial shift | adversarial NDCG@10 vs clean |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for attack, res in r.attacks.items():
        for arm, label in names.items():
            if arm not in res.arms:
                continue
            pre, adv = res.arms[arm].pretrained, res.arms[arm].adversarial
            stealth = f"{res.stealth['stealth_auc']:.2f}" if res.stealth else "n/a"
            lines.append(f"| {attack} | {label} | {res.screen.recall:.2f} / {res.screen.precision:.2f} | {stealth} | "
                         f"{pre['target_hit@10']:.4f} / {pre['target_hit@50']:.4f} | "
                         f"{adv['target_hit@10']:.4f} / {adv['target_hit@50']:.4f} | "
                         f"{pre['prediction_shift']:+.4f} | {adv['prediction_shift']:+.4f} | "
                         f"{100 * (adv['ndcg@10_change'] or 0.0):+.1f}% |")
    return "\n".join(lines)


def gan_table(metrics: Path) -> str:
    import json

    g = json.loads((metrics / "gan.json").read_text())
    lines = ["| fakes | n | item-popularity TV | length mean ± std (real: mean ± std) | screen recall | "
             "screen precision (flagged) |", "|---|---:|---:|---|---:|---:|"]
    for name, a in g["attacks"].items():
        lines.append(f"| {name} | {int(a['n_fake'])} | {a['tv_distance']:.3f} | {a['fake_length_mean']:.0f} ± "
                     f"{a['fake_length_std']:.0f} ({a['real_length_mean']:.0f} ± {a['real_length_std']:.0f}) | "
                     f"{a['screen_recall']:.2f} | {a['screen_precision']:.2f} ({a['screen_flagged']:.0f}) |")
    return "\n".join(lines)


def cold_start_table(metrics: Path) -> str:
    r = ColdStartResult.from_json((metrics / "cold_start.json").read_text())
    if not r.enabled:
        return "(cold_start.enabled is false: no cold-start evaluation in this run)"
    lines = [f"{r.n_cold_test} test-cold items ({r.n_cold_test_pairs} test pairs), {r.n_cold_valid} validation-cold; "
             f"item share {r.item_share:g}, seed {r.seed}. Every item ranked, train and validation masked.", "",
             "| model | warm NDCG@10 | cold NDCG@10 | cold Recall@20 | all NDCG@10 |", "|---|---:|---:|---:|---:|"]
    for name, m in r.models.items():
        lines.append(f"| {name} | {m.warm['ndcg@10']:.4f} | {m.cold['ndcg@10']:.4f} | {m.cold['recall@20']:.4f} | "
                     f"{m.all['ndcg@10']:.4f} |")
    return "\n".join(lines)


def distillation_table(metrics: Path) -> str:
    r = DistillationResult.from_json((metrics / "distillation.json").read_text())
    if not r.enabled:
        return "(distillation.enabled is false: no distillation in this run)"
    student = (f"the first {r.student_layers} layer(s) of its LM" if r.student_layers
               else "its LM's token embeddings alone (0 layers)")
    lines = [f"Teacher: the pretrained {r.teacher} ({r.teacher_layers}-layer encoder); students on {student}; "
             f"distillation over the teacher's top-{r.top_k} + {r.n_random} random items, "
             f"temperature {r.temperature:g}, weight {r.weight:g}.", "",
             "| model | encoder layers | test NDCG@10 | Recall@20 | kept of the teacher | best epoch |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, m in r.models.items():
        recall = f"{m.test['recall@20']:.4f}" if "recall@20" in m.test else "–"
        epoch = "" if m.best_epoch is None else str(m.best_epoch)
        layers = "no LM" if m.encoder_layers is None else m.encoder_layers
        lines.append(f"| {name} | {layers} | {m.test['ndcg@10']:.4f} | {recall} | "
                     f"{100 * m.ndcg_retained:.1f}% | {epoch} |")
    return "\n".join(lines)


def text_attacks_table(metrics: Path) -> str:
    from rrec_core.results import TextAttackResult

    r = TextAttackResult.from_json((metrics / "text_attacks.json").read_text())
    if not r.enabled:
        return "(text_attacks.enabled is false: no text attack evaluation in this run)"
    lines = [f"{len(r.targets)} targets, mean audience {r.mean_audience:.0f} users; HR@50 = exposure@50 over the "
             "audience; sanitized = the attacked title after the validation stage's sanitizer.", "",
             "| model | targets | attack (budget) | clean HR@50 | attacked HR@50 | sanitized HR@50 | test NDCG@10 attacked "
             "(clean) | edit distance | LM similarity | survives sanitizer |",
             "|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for name, m in r.models.items():
        kind = ("cold, guarded" if m.new_item_guard else "cold") if m.targets_cold else "warm"
        for attack, a in m.attacks.items():
            lines.append(f"| {name.split(' (')[0]} | {kind} | {attack} ({a.budget}) | {m.clean.hr50:.4f} | "
                         f"{a.undefended.hr50:.4f} | {a.sanitized.hr50:.4f} | {a.test_ndcg10:.4f} ({m.clean_test_ndcg10:.4f}) "
                         f"| {a.edit_distance:.1f} | {a.lm_similarity:.3f} | {a.survives_sanitizer:.2f} |")
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[Path], str]] = {"pretrain": pretrain_table, "robustness": robustness_table,
                                            "poisoning": poisoning_table, "gan": gan_table,
                                            "cold_start": cold_start_table, "distillation": distillation_table,
                                            "text_attacks": text_attacks_table}
_BLOCK = re.compile(r"(<!-- BEGIN generated: (\w+) -->\n)(.*?)(<!-- END generated: \2 -->)", re.S)


def render(doc: str, metrics: Path) -> str:
    def fill(m: re.Match) -> str:
        name = m.group(2)
        if name not in BLOCKS:
            raise KeyError(f"{DOC}: unknown generated block {name!r} (known: {sorted(BLOCKS)})")
        return m.group(1) + BLOCKS[name](metrics) + "\n" + m.group(4)

    return _BLOCK.sub(fill, doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a generated block is stale")
    p.add_argument("--doc", default=str(DOC))
    p.add_argument("--metrics", default="metrics")
    args = p.parse_args(argv)
    doc = Path(args.doc)
    old = doc.read_text()
    new = render(old, Path(args.metrics))
    if args.check:
        if new != old:
            print(f"{doc}: generated tables differ from {args.metrics}/ (run python -m rrec_core.reporting.results_doc)",
                  file=sys.stderr)
            return 1
        return 0
    from rrec_core.io import write_text

    write_text(doc, new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
