import pytest
import torch

from rrec_core.attacks import Attack, bpr_loss, perturbations
from rrec_core.config import AdversarialConfig, DataConfig, EvalConfig, MFConfig, SplitConfig
from rrec_core.data import load_dataset
from rrec_core.data.split import split_interactions
from rrec_core.evaluation.attacked import attacked_metrics
from rrec_core.training.adversarial import AdversarialLoss
from rrec_core.training.loop import build_model, train_recommender


def _problem(seed=0, n_u=30, n_v=40, d=8, B=200):
    g = torch.Generator().manual_seed(seed)
    U, V = torch.randn(n_u, d, generator=g), torch.randn(n_v, d, generator=g)
    idx = torch.randint(n_u, (B,), generator=g), torch.randint(n_v, (B,), generator=g), torch.randint(n_v, (B,), generator=g)
    return U, V, idx


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("scale", ["absolute", "relative"])
@pytest.mark.parametrize("steps", [1, 10])
def test_attack_raises_loss_and_stays_in_ball(norm, scale, steps):
    U, V, (u, p, n) = _problem(seed=steps)
    attack = Attack(eps=0.3, steps=steps, norm=norm, scale=scale)
    dU, dV = perturbations(U, V, u, p, n, attack)
    before = bpr_loss(U[u], V[p], V[n])
    after = bpr_loss((U + dU)[u], (V + dV)[p], (V + dV)[n])
    assert after > before + 1e-3
    for X, dX in ((U, dU), (V, dV)):
        r = 0.3 * (X.norm(dim=-1) if scale == "relative" else torch.ones(len(X)))
        size = dX.norm(dim=-1) if norm == "l2" else dX.abs().amax(dim=-1)
        assert (size <= r + 1e-6).all()


def test_closed_form_gradient_matches_autograd():
    from rrec_core.attacks import bpr_gradients

    U, V, (u, p, n) = _problem(seed=3)
    Ug, Vg = U.clone().requires_grad_(), V.clone().requires_grad_()
    bpr_loss(Ug[u], Vg[p], Vg[n]).backward()
    gU, gV = bpr_gradients(U, V, u, p, n)
    assert torch.allclose(gU, Ug.grad, atol=1e-7) and torch.allclose(gV, Vg.grad, atol=1e-7)


def test_repeated_rows_move_once():
    U, V, _ = _problem()
    u = torch.tensor([0, 0, 0, 1])
    p, n = torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])
    dU, _ = perturbations(U, V, u, p, n, Attack(eps=0.5, steps=1))
    assert dU[0].norm() == pytest.approx(0.5, abs=1e-5)  # one perturbation of the summed gradient
    assert dU[2:].abs().sum() == 0  # rows outside the batch are untouched


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import write_tiny_atomic

    path = write_tiny_atomic(tmp_path_factory.mktemp("d") / "tiny", n_users=60, n_items=80, per_user=15)
    ds = load_dataset(DataConfig(path=str(path)))
    split = split_interactions(ds.interactions, SplitConfig(), ds.items["item_id"].tolist())
    cfg = MFConfig(embedding_dim=16, lr=0.01, batch_size=128, epochs=30, patience=100, device="cpu")
    res = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)), progress=False)
    return split, res.model, cfg


def test_more_pgd_steps_at_least_as_strong_as_fgsm(trained):
    split, model, _ = trained
    ev = EvalConfig(ks=(10,))
    clean = attacked_metrics(model, split, Attack(eps=0.0, steps=1), "test", ev)["ndcg@10"]
    fgsm = attacked_metrics(model, split, Attack(eps=0.5, steps=1), "test", ev)["ndcg@10"]
    pgd = attacked_metrics(model, split, Attack(eps=0.5, steps=20), "test", ev)["ndcg@10"]
    assert fgsm < clean
    assert pgd <= fgsm + 1e-9


@pytest.mark.parametrize("method", ["apr", "pgd"])
def test_adversarial_training_reduces_the_drop(trained, method):
    """Same seed, same start: continue plain BPR vs continue with APR/PGD-AT; compare the drop."""
    import copy

    split, model, cfg = trained
    ev = EvalConfig(ks=(10,))
    attack = Attack(eps=0.5, steps=10)
    more = MFConfig(**{**cfg.model_dump(), "epochs": 15})
    plain = train_recommender(copy.deepcopy(model), split, more, ev, progress=False).model
    adv_cfg = AdversarialConfig(method=method, eps=0.5, steps=3, clean_weight=0.5)
    adv = train_recommender(copy.deepcopy(model), split, more, ev, progress=False,
                            batch_loss=AdversarialLoss(adv_cfg)).model

    def kept(m):
        c = attacked_metrics(m, split, Attack(eps=0.0), "test", ev)["ndcg@10"]
        return attacked_metrics(m, split, attack, "test", ev)["ndcg@10"] / c

    assert kept(adv) > kept(plain)


def test_adversarial_loss_is_a_mix_of_clean_and_attacked(trained):
    split, model, _ = trained
    u, p = torch.as_tensor(split.train[:64, 0]), torch.as_tensor(split.train[:64, 1])
    n = torch.randint(split.n_items, (64,), generator=torch.Generator().manual_seed(0))
    clean = model.bpr_loss(u, p, n)
    only_clean = AdversarialLoss(AdversarialConfig(clean_weight=1.0))(model, u, p, n)
    only_adv = AdversarialLoss(AdversarialConfig(clean_weight=0.0, eps=0.5))(model, u, p, n)
    assert only_clean.item() == pytest.approx(clean.item(), rel=1e-5)
    assert only_adv.item() > clean.item() + 0.01  # the attack raises the loss
    for w in (0.25, 0.5, 0.9):  # the objective is exactly w * clean + (1 - w) * attacked
        mixed = AdversarialLoss(AdversarialConfig(clean_weight=w, eps=0.5))(model, u, p, n)
        assert mixed.item() == pytest.approx(w * clean.item() + (1 - w) * only_adv.item(), rel=1e-5)
