import math

import numpy as np
import pytest
import torch

from rrec_core.evaluation.ranking import evaluate_full_ranking, topk_metrics


def test_topk_metrics_hand_checked():
    # user 0: hits at ranks 1 and 3 of 2 positives; user 1: no hit in top 3 of 1 positive
    hits = torch.tensor([[1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    m = topk_metrics(hits, torch.tensor([2, 1]), ks=[3])
    dcg0 = 1 + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((dcg0 / idcg0 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["hit@3"] == pytest.approx(0.5)
    assert m["mrr@3"] == pytest.approx(0.5)
    assert m["precision@3"] == pytest.approx((2 / 3) / 2)


def test_idcg_uses_min_of_positives_and_k():
    hits = torch.tensor([[1, 1]], dtype=torch.bool)
    m = topk_metrics(hits, torch.tensor([5]), ks=[2])
    assert m["ndcg@2"] == pytest.approx(1.0)
    assert m["recall@2"] == pytest.approx(2 / 5)


def test_full_ranking_masks_history_and_skips_users_without_targets():
    n_users, n_items = 3, 5
    scores = torch.tensor([[5.0, 4, 3, 2, 1], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    target = np.array([[0, 2], [1, 0]])
    exclude = [np.array([[0, 0], [0, 1]])]  # items 0,1 are user 0's history: item 2 becomes rank 1
    m = evaluate_full_ranking(lambda u: scores[u], n_users, n_items, target, exclude, ks=[1, 5])
    assert m["hit@1"] == pytest.approx(0.5)  # user 0 hits at rank 1, user 1's item 0 is last
    assert m["mrr@5"] == pytest.approx((1.0 + 1 / 5) / 2)
    assert m["ndcg@5"] == pytest.approx((1.0 + 1 / math.log2(6)) / 2)


def test_batching_does_not_change_results():
    rng = np.random.default_rng(0)
    scores = torch.randn(50, 30)
    target = np.stack([rng.integers(0, 50, 80), rng.integers(0, 30, 80)], 1)
    hist = np.stack([rng.integers(0, 50, 200), rng.integers(0, 30, 200)], 1)
    a = evaluate_full_ranking(lambda u: scores[u], 50, 30, target, [hist], batch_users=7)
    b = evaluate_full_ranking(lambda u: scores[u], 50, 30, target, [hist], batch_users=1000)
    assert a == pytest.approx(b)


def test_a_reused_full_ranking_gives_what_a_fresh_one_gives():
    """The attacks evaluate through one FullRanking with its masks kept; it must rank exactly as a fresh
    evaluation does, block by block, for any score function."""
    import numpy as np
    import torch

    from rrec_core.evaluation.ranking import FullRanking, full_ranking_per_user

    rng = np.random.default_rng(0)
    n_users, n_items = 23, 40
    pairs = np.array([(u, i) for u in range(n_users) for i in rng.choice(n_items, 8, replace=False)])
    target, exclude = pairs[::4], [np.delete(pairs, np.s_[::4], axis=0)]
    kept = FullRanking(n_users, n_items, target, exclude, ks=(5, 10), batch_users=6)
    assert kept._masks is not None and len(kept.blocks) == 4
    for seed in range(3):
        scores = torch.randn(n_users, n_items, generator=torch.Generator().manual_seed(seed))
        users, fresh = full_ranking_per_user(lambda u, s=scores: s[u], n_users, n_items, target, exclude, (5, 10), 6)
        again = kept.per_user(lambda u, s=scores: s[u])
        assert torch.equal(users, kept.users)
        assert fresh.keys() == again.keys() and all(torch.equal(fresh[k], again[k]) for k in fresh)
