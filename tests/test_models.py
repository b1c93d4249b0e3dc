import numpy as np
import pytest
import torch

from rrec_core.config import EvalConfig, HybridConfig, SplitConfig
from rrec_core.data.split import split_interactions
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.models import load_recommender, save_recommender
from rrec_core.training.loop import build_model, train_recommender, warm_start_from
from rrec_core.training.sampling import NegativeSampler


@pytest.fixture()
def split(tiny_data):
    from rrec_core.config import DataConfig
    from rrec_core.data import load_dataset

    ds = load_dataset(DataConfig(path=str(tiny_data)))
    return split_interactions(ds.interactions, SplitConfig(), ds.items["item_id"].tolist())


def _feats(split, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(split.n_items, dim, generator=g), dim=-1)


FAST = dict(embedding_dim=16, lr=0.01, batch_size=64, epochs=15, patience=100, device="cpu")


def test_sampler_never_returns_training_positives(split):
    s = NegativeSampler(split.train, split.n_items, torch.Generator().manual_seed(0))
    users = torch.as_tensor(split.train[:, 0]).repeat(20)
    neg = s.sample(users)
    assert not s.is_positive(users, neg).any()
    # validation/test items are legitimate negatives: the sampler must not know about them
    held = torch.as_tensor(np.concatenate([split.valid, split.test]))
    assert not s.is_positive(held[:, 0], held[:, 1]).any()


def test_sampler_lookups_agree_with_the_pairs(split, monkeypatch):
    """The dense bitmap (small tables) and the sorted-key search (large ones) answer membership from the
    training pairs alone, so they draw the same negatives; a user with no training rows holds nothing."""
    from rrec_core.training import sampling

    train = np.asarray(split.train)
    held_users = int(train[:, 0].max()) + 1  # beyond every training row
    users = torch.as_tensor(np.concatenate([train[:, 0], np.full(50, held_users)]))
    items = torch.as_tensor(np.concatenate([train[:, 1], np.arange(50) % split.n_items]))
    truth = torch.cat([torch.ones(len(train), dtype=torch.bool), torch.zeros(50, dtype=torch.bool)])
    draws = []
    for limit in (sampling.DENSE_LOOKUP_BYTES, 0):
        monkeypatch.setattr(sampling, "DENSE_LOOKUP_BYTES", limit)
        s = NegativeSampler(train, split.n_items, torch.Generator().manual_seed(0))
        assert (s.dense is not None) == (limit > 0)
        assert torch.equal(s.is_positive(users, items), truth)
        assert not s.is_positive(users[:len(train)], (items[:len(train)] + 1) % split.n_items).all()
        draws.append(s.sample(users))
    assert torch.equal(draws[0], draws[1])


@pytest.mark.parametrize("kind", ["mf_bpr", "text_hybrid"])
def test_loss_decreases_and_beats_random(split, kind):
    cfg = HybridConfig(**FAST)
    model = build_model(kind, split, cfg, _feats(split))
    res = train_recommender(model, split, cfg, EvalConfig(ks=(10,)), progress=False)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < 0.7 * losses[0]
    assert res.best_valid["ndcg@10"] > 0.15  # random ranking of ~60 items gives ~0.06 here


def test_training_is_reproducible(split):
    cfg = HybridConfig(**{**FAST, "epochs": 3})
    a = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)), progress=False)
    b = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)), progress=False)
    assert torch.equal(a.model.user_embedding.weight, b.model.user_embedding.weight)


def test_best_checkpoint_is_kept(split):
    cfg = HybridConfig(**{**FAST, "lr": 0.05, "epochs": 20})
    res = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)), progress=False)
    now = evaluate_model(res.model, split, "valid", EvalConfig(ks=(10,)))["ndcg@10"]
    assert now == pytest.approx(max(h["valid_ndcg@10"] for h in res.history))


def test_warm_start_never_loses_validation(split):
    cfg = HybridConfig(**FAST)
    mf = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)), progress=False)
    hyb = build_model("text_hybrid", split, cfg, _feats(split))
    warm_start_from(hyb, mf.model)
    res = train_recommender(hyb, split, cfg, EvalConfig(ks=(10,)), progress=False, warm_start=True)
    assert res.best_valid["ndcg@10"] >= mf.best_valid["ndcg@10"] - 1e-9


@pytest.mark.parametrize("kind", ["mf_bpr", "text_hybrid"])
def test_save_load_roundtrip(split, tmp_path, kind):
    cfg = HybridConfig(**{**FAST, "epochs": 2})
    model = build_model(kind, split, cfg, _feats(split))
    train_recommender(model, split, cfg, EvalConfig(ks=(10,)), progress=False)
    save_recommender(model, tmp_path / kind)
    assert not list((tmp_path / kind).glob("*.tmp"))
    back = load_recommender(tmp_path / kind)
    users = torch.arange(split.n_users)
    assert torch.allclose(back.score(users), model.eval().score(users))
    assert back.item_ids == split.item_ids and back.user_ids == split.user_ids
    assert back.score(users[:3]).shape == (3, split.n_items)
