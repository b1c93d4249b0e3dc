"""What a shallower student encoder buys: item-encoding and scoring time beside the quality it keeps.

For encoders made of the first N layers of the pipeline's language model (N = 0 (token embeddings
alone), 1, 2, 3, the student's and the teacher's full depth) it measures, in one process, side by side:

- catalogue encoding, eager PyTorch (what the pipeline runs: rrec_core.lm.encoder.encode_texts);
- catalogue encoding with the model under torch.compile (dynamic shapes; compile time reported apart);
- one new item encoded alone (the latency a catalogue update pays per item), eager;
- scoring every item for every user + top-10 from the materialized vectors of the teacher and the
  students of artifacts/distillation (the cost a served model pays per request, whatever encoder
  produced the vectors);

and quotes the quality each student kept (artifacts/distillation, the metrics/distillation.json of the
same pipeline run). Medians after a warm-up pass.

    python bench/distillation.py                # layers 0, 1, 2, 3 and all; eager and torch.compile
    python bench/distillation.py --no-compile   # eager only
    python bench/distillation.py --smoke        # the student's depth and all, one repeat, no compile (tests)

Needs artifacts/validated_interactions, artifacts/item_text_embeddings, artifacts/pretrained_recommender
and artifacts/distillation (`make run`). Writes bench/results/distillation_<device>_<date>.md and .json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout
from rrec_core.artifacts import DistillationEvaluation, ItemTextEmbeddings, TrainedModels, ValidatedData  # noqa: E402
from rrec_core.config import EncoderConfig  # noqa: E402
from rrec_core.evaluation.distillation import time_scoring  # noqa: E402
from rrec_core.lm.encoder import encode_texts, load_language_model, transformer_layers  # noqa: E402


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def encoder_row(texts: list[str], cfg: EncoderConfig, repeats: int, compile_: bool) -> dict:
    tokenizer, lm = load_language_model(cfg)
    row: dict = {"layers": len(transformer_layers(lm)),
                 "params_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 2)}
    row["eager_s"] = _median_seconds(lambda: encode_texts(texts, tokenizer, lm, cfg, progress=False), repeats)
    one = texts[len(texts) // 2:len(texts) // 2 + 1]
    row["one_item_ms"] = 1000 * _median_seconds(lambda: encode_texts(one, tokenizer, lm, cfg, progress=False),
                                                max(5, repeats))
    if compile_:
        compiled = torch.compile(lm, dynamic=True)
        t0 = time.perf_counter()
        encode_texts(texts, tokenizer, compiled, cfg, progress=False)  # compiles (and recompiles per shape)
        row["compile_s"] = time.perf_counter() - t0
        row["compiled_s"] = _median_seconds(lambda: encode_texts(texts, tokenizer, compiled, cfg, progress=False),
                                            repeats)
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    art = Path(args.artifacts)
    data = ValidatedData.load(art / "validated_interactions")
    text = ItemTextEmbeddings.load(art / "item_text_embeddings").emb
    distilled = DistillationEvaluation.load(art / "distillation")
    teacher = TrainedModels.load(art / "pretrained_recommender").models["text_hybrid"]
    result = distilled.result
    base = EncoderConfig(**text.config)
    full = result.teacher_layers
    depths = sorted({result.student_layers, full} | (set() if args.smoke else {d for d in (0, 1, 2, 3) if d < full}))
    repeats = 1 if args.smoke else args.repeats
    compile_ = not (args.no_compile or args.smoke)
    rows = []
    for depth in depths:
        cfg = base.model_copy(update={"layers": None if depth == full else depth})
        t0 = time.perf_counter()
        rows.append(encoder_row(text.texts, cfg, repeats, compile_))
        print(f"{depth} layer(s): {time.perf_counter() - t0:.0f}s", flush=True)
    reference = next(r for r in rows if r["layers"] == full)["eager_s"]
    scoring = {"teacher": time_scoring(teacher, data.split.n_users, repeats=max(5, repeats))}
    scoring.update({name: time_scoring(m, data.split.n_users, repeats=max(5, repeats))
                    for name, m in distilled.models.items()})
    quality = {m.encoder_layers: (name, m) for name, m in result.models.items()
               if name in ("teacher", "student")}
    device = (torch.cuda.get_device_name() if base.device != "cpu" and torch.cuda.is_available()
              else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
    today = dt.date.today().isoformat()
    lines = [f"# Distillation: encoder depth vs time and quality — {device}, {today}", "",
             f"{len(text.texts)} item texts of {art}/item_text_embeddings, encoder {base.model} (batch "
             f"{base.batch_size}, max_length {base.max_length}); medians of {repeats} after a warm-up; torch "
             f"{torch.__version__}. Quality: artifacts/distillation (metrics/distillation.json) of the pipeline run.",
             "",
             "| encoder layers | params (M) | catalogue, eager (s) | catalogue, torch.compile (s) | compile (s) | "
             "one new item, eager (ms) | speed-up vs full, eager | model | test NDCG@10 | kept |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        name, m = quality.get(r["layers"], ("", None))
        compiled = f"{r['compiled_s']:.3f}" if "compiled_s" in r else "–"
        comp = f"{r['compile_s']:.0f}" if "compile_s" in r else "–"
        q = f"{m.test['ndcg@10']:.4f} | {100 * m.ndcg_retained:.1f}%" if m is not None else "– | –"
        lines.append(f"| {r['layers']} | {r['params_m']} | {r['eager_s']:.3f} | {compiled} | {comp} | "
                     f"{r['one_item_ms']:.1f} | {reference / r['eager_s']:.2f}× | {name or '–'} | {q} |")
    lines += ["", f"Scoring {data.split.n_users} users × {data.split.n_items} items + top-10 from materialized "
              "vectors (median of 5):", "", "| model | seconds |", "|---|---:|"]
    lines += [f"| {name} | {s:.4f} |" for name, s in scoring.items()]
    md = "\n".join(lines) + "\n"
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = "cpu" if device.startswith("cpu") else device.split()[-1].lower()
    stem = f"distillation_{tag}_{today}" + ("_smoke" if args.smoke else "")
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(json.dumps({"device": device, "date": today, "encoders": rows,
                                                  "scoring_seconds": scoring}, indent=2) + "\n")


if __name__ == "__main__":
    main()
