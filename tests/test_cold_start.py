"""Item cold start: the split holds no training interaction of a cold item and loses none; the treated
hybrid scores cold items by text alone, never samples them as negatives, and ranks them where text
says, which MF-BPR cannot."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rrec_core.config import ColdStartConfig, EvalConfig, HybridConfig, MFConfig, NewItemGuardConfig, PretrainConfig
from rrec_core.data.cold import hold_out_items
from rrec_core.data.split import Split
from rrec_core.evaluation.cold_start import cold_start_metrics, evaluate_cold_start, popularity_scorer
from rrec_core.training.loop import build_model
from rrec_core.training.sampling import NegativeSampler


def _clustered(n_users=90, n_items=120, n_clusters=4, per_user=16, dim=16, seed=0):
    """Users like the items of their cluster; an item's 'text' vector says its cluster (plus noise)."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n_items)
    centres = rng.normal(size=(n_clusters, dim))
    text = torch.as_tensor(centres[cluster] + 0.3 * rng.normal(size=(n_items, dim)), dtype=torch.float32)
    pairs = []
    for u in range(n_users):
        liked = np.flatnonzero(cluster == u % n_clusters)
        for i in rng.choice(liked, min(per_user, len(liked)), replace=False):
            pairs.append((u, i))
    pairs = np.asarray(pairs, dtype=np.int64)
    rng.shuffle(pairs)
    pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    part = np.concatenate([np.r_[np.zeros(12), np.ones(2), 2 * np.ones(per_user - 14)] for _ in range(n_users)])
    split = Split([str(u) for u in range(n_users)], [str(i) for i in range(n_items)],
                  pairs[part == 0], pairs[part == 1], pairs[part == 2])
    return split, text


def test_hold_out_items_moves_every_interaction_of_a_cold_item_out_of_train_and_loses_none():
    split, _ = _clustered()
    cs = hold_out_items(split, 0.2, seed=1)
    assert len(cs.cold_valid) + len(cs.cold_test) == 24 and not np.intersect1d(cs.cold_valid, cs.cold_test).size
    assert not np.isin(cs.split.train[:, 1], cs.cold_items).any()
    assert not np.isin(cs.split.valid[:, 1], cs.cold_test).any()  # a test-cold item is never seen in selection
    assert not np.isin(cs.split.test[:, 1], cs.cold_valid).any()

    def as_set(*parts):
        return {tuple(p) for a in parts for p in a.tolist()}

    assert as_set(split.train, split.valid, split.test) == as_set(cs.split.train, cs.split.valid, cs.split.test)
    warm = ~np.isin(split.train[:, 1], cs.cold_items)
    assert as_set(split.train[warm]) == as_set(cs.split.train)  # warm items keep their split
    same = hold_out_items(split, 0.2, seed=1)
    assert np.array_equal(same.cold_test, cs.cold_test)
    chosen = hold_out_items(split, 0.5, seed=1, items=[3, 7, 9, 11])
    assert sorted(chosen.cold_items.tolist()) == [3, 7, 9, 11]
    with pytest.raises(ValueError, match="share"):
        hold_out_items(split, 1.5, seed=1)


def test_popularity_control_gives_cold_items_nothing():
    split, _ = _clustered()
    cs = hold_out_items(split, 0.2, seed=1)
    scores = popularity_scorer(cs.split)(torch.arange(3))
    assert (scores[:, torch.as_tensor(cs.cold_items)] == 0).all()


def test_treated_hybrid_scores_cold_items_by_text_alone_and_never_samples_them():
    split, text = _clustered()
    cs = hold_out_items(split, 0.2, seed=1)
    cfg = HybridConfig(embedding_dim=8, cold_start=True, id_dropout=0.2, device="cpu")
    model = build_model("text_hybrid", cs.split, cfg, text)
    cold = torch.as_tensor(cs.cold_items)
    assert (model.item_id_mask[cold] == 0).all() and model.item_id_mask.sum() == split.n_items - len(cold)
    model.eval()
    before = model.item_vectors(cold).detach().clone()
    with torch.no_grad():
        model.item_embedding.weight[cold] += 5.0  # whatever the ID rows hold
    assert torch.allclose(model.item_vectors(cold), before)
    trained = torch.as_tensor(np.unique(cs.split.train[:, 1]))
    sampler = NegativeSampler(cs.split.train, split.n_items, torch.Generator().manual_seed(0), trained)
    neg = sampler.sample(torch.as_tensor(cs.split.train[:, 0]))
    assert not torch.isin(neg, cold).any()


def test_cold_start_treatment_lets_text_rank_the_cold_items(tmp_path):
    split, text = _clustered()
    pcfg = PretrainConfig(mf_bpr=MFConfig(embedding_dim=8, lr=0.01, batch_size=256, epochs=40, patience=100,
                                          device="cpu"),
                          text_hybrid=HybridConfig(embedding_dim=8, lr=0.01, text_lr=0.01, batch_size=256, epochs=40,
                                                   patience=100, device="cpu"))
    result, timings = evaluate_cold_start(SimpleNamespace(split=split), text, pcfg,
                                          ColdStartConfig(item_share=0.2, seed=1, id_dropout=0.3), EvalConfig(ks=(10,)),
                                          guard=NewItemGuardConfig(rest_quantile=0.9))
    m = result.models
    assert set(m) == {"random", "popularity", "text_knn", "mf_bpr", "text_hybrid", "text_hybrid_cold_start",
                      "text_hybrid_cold_start_guarded"}
    # the guard serves only the cold items differently: it changes their ranking, and the treated model
    # it was fitted on is left unguarded for the rows recorded before it
    assert m["text_hybrid_cold_start_guarded"].cold != m["text_hybrid_cold_start"].cold
    assert result.n_cold_test == 12 and result.n_cold_test_pairs > 0 and "mf_bpr/train" in timings
    treated = m["text_hybrid_cold_start"].cold["ndcg@10"]
    assert treated > 2 * m["random"].cold["ndcg@10"]
    assert treated > m["mf_bpr"].cold["ndcg@10"] + 0.05
    assert treated > m["text_hybrid"].cold["ndcg@10"]


def test_cold_start_metrics_split_the_test_pairs():
    split, _ = _clustered()
    cs = hold_out_items(split, 0.2, seed=1)
    out = cold_start_metrics(lambda u: torch.zeros(len(u), split.n_items), cs, ks=(10,))
    assert set(out) == {"all", "warm", "cold"} and all("ndcg@10" in v for v in out.values())
