"""Item cold start: how well each model ranks items nobody has interacted with (docs/cold_start.md).

On a split where a share of the items has no training interaction (rrec_core.data.cold), every model
and control is trained on the warm part and ranks *all* items for each test user (train and
validation masked); NDCG@10 / Recall@20 are then read on three sets of test pairs: all of them, the
warm items' and the cold items'. The controls say what a number is worth: random ranking, popularity
(a cold item has none), MF-BPR (a cold item's row holds nothing learned) and a text-only
nearest-neighbour ranking by the same language-model vectors the hybrid reads.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np
import torch

from rrec_core.config import ColdStartConfig, EvalConfig, NewItemGuardConfig, PretrainConfig
from rrec_core.data.cold import ColdStartSplit, hold_out_items
from rrec_core.evaluation.ranking import evaluate_full_ranking
from rrec_core.models import Recommender, TextHybrid
from rrec_core.results import ColdStartModel, ColdStartResult

log = logging.getLogger(__name__)

Scorer = Callable[[torch.Tensor], torch.Tensor]


def model_scorer(model: Recommender) -> Scorer:
    model.eval()
    with torch.no_grad():
        items = model.item_vectors().detach().cpu()
    return lambda u: model.user_vectors(u.to(next(model.parameters()).device)).detach().cpu() @ items.T


def popularity_scorer(split) -> Scorer:
    counts = torch.bincount(torch.as_tensor(split.train[:, 1]), minlength=split.n_items).float()
    return lambda u: counts.repeat(len(u), 1)


def random_scorer(n_items: int, seed: int) -> Scorer:
    gen = torch.Generator().manual_seed(seed)
    return lambda u: torch.rand(len(u), n_items, generator=gen)


def text_knn_scorer(split, text: torch.Tensor) -> Scorer:
    """Mean cosine similarity of an item's LM vector to the user's training items' (item-kNN on text)."""
    t = torch.nn.functional.normalize(text.float(), dim=-1)
    train = torch.as_tensor(split.train)
    profile = torch.zeros(split.n_users, t.shape[1]).index_add_(0, train[:, 0], t[train[:, 1]])
    count = torch.bincount(train[:, 0], minlength=split.n_users).clamp_min(1).float()
    profile = profile / count[:, None]
    return lambda u: profile[u] @ t.T


def cold_start_metrics(score: Scorer, cs: ColdStartSplit, ks=(10, 20), batch_users: int = 1024) -> dict[str, dict]:
    """{"all" | "warm" | "cold": metrics} on the test pairs, every item ranked, train and valid masked."""
    split = cs.split
    cold = np.isin(split.test[:, 1], cs.cold_test)
    parts = {"all": split.test, "warm": split.test[~cold], "cold": split.test[cold]}
    return {name: {k: round(v, 6) for k, v in evaluate_full_ranking(
        score, split.n_users, split.n_items, target, [split.train, split.valid], ks, batch_users).items()}
            for name, target in parts.items()}


def evaluate_cold_start(data, text: torch.Tensor, pretrain_cfg: PretrainConfig, cfg: ColdStartConfig,
                        eval_cfg: EvalConfig, progress: bool = False, guard: NewItemGuardConfig | None = None
                        ) -> tuple[ColdStartResult, dict[str, float]]:
    """Hold items out, train MF-BPR, the hybrid and the hybrid with the cold-start treatment on the rest,
    and compare them with the controls. `data` is the validated data (its split), `text` [n_items, H].
    With `guard` enabled the treated hybrid is also scored with its cold items served through a
    NewItemGuard (what the defence against text tampering costs genuinely new items)."""
    from rrec_core.training.loop import build_model, train_recommender, warm_start_from

    split = data.split
    items = None
    if cfg.items:
        index = {iid: i for i, iid in enumerate(split.item_ids)}
        missing = [i for i in cfg.items if i not in index]
        if missing:
            raise ValueError(f"cold_start.items: unknown item ids {missing[:10]}")
        items = [index[i] for i in cfg.items]
    cs = hold_out_items(split, cfg.item_share, cfg.seed, items)
    ks = tuple(sorted(set(eval_cfg.ks) | {10, 20}))
    ev10 = EvalConfig(ks=(10,), batch_users=eval_cfg.batch_users)
    timings: dict[str, float] = {}
    out: dict[str, ColdStartModel] = {}

    def record(name: str, score: Scorer, best_epoch: int | None = None) -> None:
        t0 = time.perf_counter()
        out[name] = ColdStartModel(best_epoch=best_epoch, **cold_start_metrics(score, cs, ks, eval_cfg.batch_users))
        timings[f"{name}/eval"] = round(time.perf_counter() - t0, 3)
        log.info("cold start %s: all %.4f warm %.4f cold %.4f (ndcg@10)", name, out[name].all["ndcg@10"],
                 out[name].warm["ndcg@10"], out[name].cold["ndcg@10"])

    record("random", random_scorer(split.n_items, cfg.seed))
    record("popularity", popularity_scorer(cs.split))
    record("text_knn", text_knn_scorer(cs.split, text))

    mf_cfg = pretrain_cfg.mf_bpr
    t0 = time.perf_counter()
    mf = train_recommender(build_model("mf_bpr", cs.split, mf_cfg), cs.split, mf_cfg, ev10, progress=progress)
    timings["mf_bpr/train"] = round(time.perf_counter() - t0, 1)
    record("mf_bpr", model_scorer(mf.model), mf.best_epoch)
    base = pretrain_cfg.text_hybrid
    variants = {"text_hybrid": base.model_copy(update={"cold_start": False, "id_dropout": 0.0}),
                "text_hybrid_cold_start": base.model_copy(update={"cold_start": True, "id_dropout": cfg.id_dropout})}
    for name, hcfg in variants.items():
        model = build_model("text_hybrid", cs.split, hcfg, text)
        if hcfg.warm_start:
            warm_start_from(model, mf.model)
        t0 = time.perf_counter()
        res = train_recommender(model, cs.split, hcfg, ev10, progress=progress, warm_start=hcfg.warm_start,
                                text_lr=hcfg.text_lr)
        timings[f"{name}/train"] = round(time.perf_counter() - t0, 1)
        record(name, model_scorer(res.model), res.best_epoch)
        if hcfg.cold_start and guard is not None and guard.enabled:
            treated = res.model
            assert isinstance(treated, TextHybrid)
            treated.fit_new_item_guard(guard.rest_quantile, guard.level_quantile, guard.cap_level)
            record(f"{name}_guarded", model_scorer(treated), res.best_epoch)
            treated.set_new_item_guard(None)
    n_cold_pairs = int(np.isin(cs.split.test[:, 1], cs.cold_test).sum())
    result = ColdStartResult(item_share=cfg.item_share, seed=cfg.seed, n_cold_valid=len(cs.cold_valid),
                             n_cold_test=len(cs.cold_test), n_cold_test_pairs=n_cold_pairs,
                             cold_test_items=[split.item_ids[i] for i in cs.cold_test], models=out)
    return result, timings
