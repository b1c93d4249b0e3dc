"""The training loop's early stopping: the returned model is the state of the best validation epoch
(ID tables and, with tuned LM layers, the text vectors they produced), not the last one."""
import numpy as np
import pytest
import torch

from rrec_core.config import EncoderConfig, EvalConfig, HybridConfig, MFConfig
from rrec_core.data.split import Split
from rrec_core.training.loop import build_model, train_recommender


def _split(n_users=20, n_items=12, per_user=6, seed=0) -> Split:
    rng = np.random.default_rng(seed)
    pairs = np.asarray([(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)])
    return Split([str(u) for u in range(n_users)], [f"movie {i}" for i in range(n_items)], pairs[::2], pairs[1::4],
                 pairs[3::4])


def _scripted(scores, snapshots, read):
    """valid_score returning the scripted scores in turn and recording what `read(model)` gives at each."""
    it = iter(scores)

    def valid_score(model):
        snapshots.append(read(model))
        return {"score": next(it)}
    return valid_score


def test_early_stopping_returns_the_best_epoch_and_stops_after_patience():
    split = _split()
    cfg = MFConfig(embedding_dim=4, lr=0.05, batch_size=16, epochs=20, patience=2, device="cpu")
    model = build_model("mf_bpr", split, cfg)
    snaps: list = []
    res = train_recommender(model, split, cfg, EvalConfig(ks=(5,)), progress=False,
                            valid_score=_scripted([0.1, 0.3, 0.2, 0.25, 0.9], snaps,
                                                  lambda m: m.user_embedding.weight.detach().clone()))
    assert res.best_epoch == 2 and len(res.history) == 4  # epochs 3 and 4 not better: stopped after patience 2
    assert torch.equal(model.user_embedding.weight, snaps[1])
    assert not torch.equal(model.user_embedding.weight, snaps[-1])


@pytest.mark.parametrize("lm_update_every", [0, 2])
def test_early_stopping_restores_the_tuned_layers_text_vectors(tiny_bert, lm_update_every):
    from rrec_core.lm.tower import LMTower

    split = _split()
    texts = [f"movie number {i}" for i in range(split.n_items)]
    cfg = HybridConfig(embedding_dim=4, lr=0.05, text_lr=0.05, batch_size=16, epochs=20, patience=2, device="cpu")
    tower = LMTower(texts, EncoderConfig(model=str(tiny_bert), device="cpu"), n_layers=1)
    model = build_model("text_hybrid", split, cfg, torch.zeros(split.n_items, 32))
    with torch.no_grad():
        model.text_proj.weight.normal_(0, 0.5)  # reads the text, so the tuned layer gets a gradient
    snaps: list = []
    res = train_recommender(model, split, cfg, EvalConfig(ks=(5,)), lm_tower=tower, progress=False, lm_lr=0.05,
                            lm_update_every=lm_update_every,
                            valid_score=_scripted([0.1, 0.3, 0.2, 0.25], snaps,
                                                  lambda m: m.eval()._features(None).detach().clone()))
    assert res.best_epoch == 2
    assert not torch.allclose(snaps[1], snaps[-1])  # the layer moved after the best epoch
    assert torch.allclose(model.text_features, snaps[1], atol=1e-5) and model.text_override is None
