"""Knowledge distillation: how much of the text hybrid a cheaper student keeps (docs/distillation.md).

The teacher is the pretrained text hybrid, whose item text passes through every layer of the language
model. The student is the same hybrid on the vectors of a shallower encoder (the first
`student_layers` layers of the same LM; 0: its token embeddings alone, mean-pooled), its ID tables
started from the teacher's, trained on
BPR + the teacher's soft ranking (rrec_core.training.distill). Its control is the same student
trained on the data alone; the ID-only reference is the pretrained MF-BPR. Every row is measured on
the same split, by the same full ranking.

What a student saves is item encoding: a served recommender scores from materialized 64-d vectors
whatever produced them, so scoring costs the same for all rows (measured to show it); a new or
changed item costs one pass of its text through the encoder, and the student's encoder is the
cheaper one. Both are timed side by side in the same process, after a warm-up.
"""
from __future__ import annotations

import logging
import statistics
import time

import torch

from rrec_core.config import DistillConfig, EncoderConfig, EvalConfig, HybridConfig
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.lm.encoder import embed_items, encode_texts, load_language_model, transformer_layers
from rrec_core.models import Recommender, TextHybrid
from rrec_core.results import DistillationResult, DistilledModel

log = logging.getLogger(__name__)


def time_encoding(texts: list[str], cfg: EncoderConfig, repeats: int = 3) -> tuple[float, int]:
    """(median seconds to encode every text, transformer layers of the encoder). The model is loaded and
    run once on one batch before the clock starts."""
    tokenizer, lm = load_language_model(cfg)
    n_layers = len(transformer_layers(lm)) if lm.config.num_hidden_layers else 0
    encode_texts(texts[:cfg.batch_size], tokenizer, lm, cfg, progress=False)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        encode_texts(texts, tokenizer, lm, cfg, progress=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n_layers


@torch.no_grad()
def time_scoring(model: Recommender, n_users: int, k: int = 10, batch_users: int = 1024, repeats: int = 3) -> float:
    """Median seconds to score every item for every user and take the top k, from the materialized
    vectors a served model keeps."""
    model.eval()
    device = next(model.parameters()).device
    users = model.user_vectors(torch.arange(n_users, device=device))
    items = model.item_vectors()
    times = []
    for _ in range(max(1, repeats) + 1):  # the first pass is the warm-up
        t0 = time.perf_counter()
        for start in range(0, n_users, batch_users):
            torch.topk(users[start:start + batch_users] @ items.T, min(k, items.shape[0]), dim=1)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def evaluate_distillation(data, text, models: dict[str, Recommender], cfg: DistillConfig, eval_cfg: EvalConfig,
                          root=".", progress: bool = False
                          ) -> tuple[DistillationResult, dict[str, Recommender], dict[str, float]]:
    """(result, trained students by name, timings). `data` is the validated data, `text` the item text
    embeddings the teacher was trained on (their encoder settings are the teacher's), `models` the
    pretrained recommenders: text_hybrid is the teacher, mf_bpr (when present) the ID-only reference."""
    from rrec_core.training.distill import DistillationLoss, teacher_ranking
    from rrec_core.training.loop import build_model, train_recommender, warm_start_from

    if "text_hybrid" not in models:
        raise ValueError("distillation needs the pretrained text_hybrid (pretrain.models) as its teacher")
    teacher = models["text_hybrid"]
    split = data.split
    teacher_enc = EncoderConfig(**text.emb.config)
    student_enc = teacher_enc.model_copy(update={"layers": cfg.student_layers})
    timings: dict[str, float] = {}

    teacher_seconds, teacher_layers = time_encoding(text.emb.texts, teacher_enc, cfg.timing_repeats)
    if not 0 <= cfg.student_layers < teacher_layers:
        raise ValueError(f"distillation.student_layers={cfg.student_layers}: the teacher's encoder has "
                         f"{teacher_layers} layers; a student needs fewer")
    student_seconds, _ = time_encoding(text.emb.texts, student_enc, cfg.timing_repeats)
    timings.update({"teacher/encode": round(teacher_seconds, 4), "student/encode": round(student_seconds, 4)})
    log.info("catalogue encoding: %d layers %.2fs, %d layer(s) %.2fs (%.2fx)", teacher_layers, teacher_seconds,
             cfg.student_layers, student_seconds, teacher_seconds / student_seconds)
    features = embed_items(data.items, student_enc, root=root, progress=progress).embeddings

    t0 = time.perf_counter()
    ranking = teacher_ranking(teacher, split.train, cfg.top_k, eval_cfg.batch_users)
    timings["teacher_ranking"] = round(time.perf_counter() - t0, 3)
    hcfg = HybridConfig(**cfg.train.model_dump(), embedding_dim=teacher.user_embedding.embedding_dim,
                        warm_start=cfg.init_from_teacher)
    ev10 = EvalConfig(ks=(10,), batch_users=eval_cfg.batch_users)
    students: dict[str, Recommender] = {}
    variants = {"student": cfg.weight, **({"student_no_distillation": 0.0} if cfg.control else {})}
    for name, weight in variants.items():
        student = build_model("text_hybrid", split, hcfg, features)
        if cfg.init_from_teacher:
            warm_start_from(student, teacher)
        if isinstance(teacher, TextHybrid) and isinstance(student, TextHybrid) and teacher.has_cold_items():
            trained = torch.nonzero(torch.as_tensor(teacher.item_id_mask) > 0).flatten()
            student.set_item_id_mask(trained)  # the teacher's cold items stay cold
        loss = DistillationLoss(ranking, weight, cfg.n_random, cfg.temperature, cfg.train.seed)
        t0 = time.perf_counter()
        res = train_recommender(student, split, hcfg, ev10, progress=progress, warm_start=cfg.init_from_teacher,
                                batch_loss=loss, text_lr=cfg.train.text_lr)
        timings[f"{name}/train"] = round(time.perf_counter() - t0, 1)
        res.model.meta.update({"distillation_weight": weight, "encoder": student_enc.model_dump(mode="json")})
        students[name] = res.model

    rows: dict[str, tuple[Recommender, int | None]] = {"teacher": (teacher, teacher_layers)}
    rows.update({name: (m, cfg.student_layers) for name, m in students.items()})
    if "mf_bpr" in models:
        rows["id_only"] = (models["mf_bpr"], None)
    metrics: dict[str, tuple[dict, dict]] = {}
    for name, (model, _) in rows.items():
        metrics[name] = (evaluate_model(model, split, "test", eval_cfg), evaluate_model(model, split, "valid", eval_cfg))
        timings[f"{name}/score"] = round(time_scoring(model, split.n_users, 10, eval_cfg.batch_users,
                                                      cfg.timing_repeats), 5)
    teacher_ndcg = metrics["teacher"][0]["ndcg@10"]
    out = {name: DistilledModel(test={k: round(v, 6) for k, v in metrics[name][0].items()},
                                valid={k: round(v, 6) for k, v in metrics[name][1].items()},
                                best_epoch=int(model.meta["best_epoch"]) if "best_epoch" in model.meta else None,
                                encoder_layers=layers,
                                ndcg_retained=round(metrics[name][0]["ndcg@10"] / teacher_ndcg, 4) if teacher_ndcg
                                else 0.0)
           for name, (model, layers) in rows.items()}
    for name, m in out.items():
        log.info("distillation %s: test ndcg@10 %.4f (%.1f%% of the teacher)", name, m.test["ndcg@10"],
                 100 * m.ndcg_retained)
    result = DistillationResult(teacher="text_hybrid", teacher_layers=teacher_layers,
                                student_layers=cfg.student_layers, top_k=cfg.top_k, n_random=cfg.n_random,
                                temperature=cfg.temperature, weight=cfg.weight, models=out)
    return result, students, timings
