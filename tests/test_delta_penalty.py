"""Attack(delta_penalty=λ): the adversary maximizes L - λ‖δ‖² (rrec_core.attacks.perturbations).

A seeded problem (the one of test_attacks.py): 30 users, 40 items, d = 8, 200 BPR triples. Norms
measured on it (‖δU‖, ‖δV‖ over the whole tables, PGD-10, eps 0.3): λ = 30 leaves at most 0.56 of
the unpenalized norm (l2, absolute radius; 0.27 relative, 0.21 / 0.05 linf), λ = 1000 at most 0.003.
"""
import pytest
import torch

from rrec_core import ops
from rrec_core.attacks import Attack, bpr_gradients, perturbations

LAMBDAS = [0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]


def _problem(seed=0, n_u=30, n_v=40, d=8, B=200):
    g = torch.Generator().manual_seed(seed)
    U, V = torch.randn(n_u, d, generator=g), torch.randn(n_v, d, generator=g)
    idx = torch.randint(n_u, (B,), generator=g), torch.randint(n_v, (B,), generator=g), torch.randint(n_v, (B,), generator=g)
    return U, V, idx


def _attack(lam, norm="l2", scale="absolute", steps=10, **kw):
    U, V, (u, p, n) = _problem()
    return perturbations(U, V, u, p, n, Attack(eps=0.3, steps=steps, norm=norm, scale=scale, delta_penalty=lam, **kw))


def _in_ball(dU, dV, norm, scale):
    U, V, _ = _problem()
    for X, dX in ((U, dU), (V, dV)):
        r = 0.3 * (X.norm(dim=-1) if scale == "relative" else torch.ones(len(X)))
        size = dX.norm(dim=-1) if norm == "l2" else dX.abs().amax(dim=-1)
        assert (size <= r + 1e-6).all()


def _plain_pgd(U, V, u, p, n, steps, norm, scale, eps=0.3):
    """The unpenalized attack, written out: `steps` projected steps of eps * alpha along the BPR
    gradient (alpha = 1 for FGSM, else 2.5 / steps), radius eps or eps * ||row||."""
    eps_u, eps_v = (eps, eps) if scale == "absolute" else (eps * U.norm(dim=-1), eps * V.norm(dim=-1))
    alpha = 1.0 if steps == 1 else 2.5 / steps
    dU, dV = torch.zeros_like(U), torch.zeros_like(V)
    for _ in range(steps):
        gU, gV = bpr_gradients(U + dU, V + dV, u, p, n)
        dU = ops.pgd_step(dU, gU, eps_u * alpha, eps_u, norm)
        dV = ops.pgd_step(dV, gV, eps_v * alpha, eps_v, norm)
    return dU, dV


@pytest.mark.parametrize("steps", [1, 10])
@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_zero_penalty_is_the_plain_attack_exactly(steps, norm, scale):
    U, V, (u, p, n) = _problem()
    plain = _plain_pgd(U, V, u, p, n, steps, norm, scale)
    assert plain[0].abs().sum() > 0 and plain[1].abs().sum() > 0
    assert Attack(eps=0.3).delta_penalty == 0.0
    default = perturbations(U, V, u, p, n, Attack(eps=0.3, steps=steps, norm=norm, scale=scale))
    for got in (_attack(0.0, norm, scale, steps), default):
        assert torch.equal(got[0], plain[0]) and torch.equal(got[1], plain[1])  # bit for bit


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_large_penalty_shrinks_the_perturbation(norm, scale):
    plain = _attack(0.0, norm, scale)
    for lam, most in ((30.0, 0.75), (1000.0, 0.02)):
        pen = _attack(lam, norm, scale)
        _in_ball(*pen, norm, scale)
        for d0, d in zip(plain, pen):  # users and items both
            assert d.norm() < most * d0.norm(), (lam, float(d.norm()), float(d0.norm()))


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_norm_non_increasing_in_penalty(norm, scale):
    """Measured on 10 seeds, l2: non-increasing along the whole grid. linf: PGD's fixed-length sign
    steps let the norm rise by up to 0.4% between neighbouring λ; 1% is allowed for it."""
    slack = 1e-6 if norm == "l2" else 1e-2
    norms = []
    for lam in LAMBDAS:
        dU, dV = _attack(lam, norm, scale)
        norms.append(float((dU.square().sum() + dV.square().sum()).sqrt()))
    assert all(b <= a * (1 + slack) for a, b in zip(norms, norms[1:])), norms
    assert norms[-1] < 0.02 * norms[0], norms


def test_large_penalty_shrinks_fgsm_too():
    """FGSM takes the closed-form maximizer of the linearized penalized objective (from delta = 0 the
    penalty has no gradient, so a plain step would ignore it)."""
    plain, pen = _attack(0.0, steps=1), _attack(1000.0, steps=1)
    assert pen[0].norm() < 0.75 * plain[0].norm() and pen[1].norm() < 0.75 * plain[1].norm()
