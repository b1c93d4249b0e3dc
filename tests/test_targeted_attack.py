"""The per-user attacker: its item shift is the furthest any perturbation in the ball moves a score, it is
at least as strong as the shared suite on the same model, and the robustness evaluation reports it beside
(not inside) the shared worst case."""
import pytest
import torch
from test_ranking_attacks import EV, _tables, trained  # noqa: F401  (the module's small trained MF)

from rrec_core.attacks.ranking import RankingAttack, ranking_attack
from rrec_core.attacks.targeted import TargetedAttack, item_perturbation, row_radius, targeted_attack, targeted_scores
from rrec_core.config import RobustnessConfig
from rrec_core.evaluation.attacked import held_out
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.evaluation.robustness import evaluate_robustness


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_the_item_shift_is_the_furthest_any_perturbation_in_the_ball_moves_a_score(norm, scale):
    gen = torch.Generator().manual_seed(0)
    u, V = torch.randn(8, generator=gen), torch.randn(30, 8, generator=gen)
    r_v = row_radius(V, 0.3, scale)
    sign = torch.where(torch.rand(30, generator=gen) < 0.2, -1.0, 1.0)
    dV = item_perturbation(u, r_v, sign, norm)
    size = dV.norm(dim=1) if norm == "l2" else dV.abs().amax(dim=1)
    assert torch.all(size <= r_v * (1 + 1e-5))  # inside each row's ball
    closed = targeted_scores(u.reshape(1, -1), V, r_v, sign.reshape(1, -1), norm)[0]
    torch.testing.assert_close(closed, (V + dV) @ u)  # the closed form is what that perturbation scores
    for _ in range(50):  # no other perturbation in the ball moves any score further in its direction
        d = torch.randn(30, 8, generator=gen)
        d = d / (d.norm(dim=1, keepdim=True) if norm == "l2" else d.abs().amax(dim=1, keepdim=True))
        d = d * r_v.reshape(-1, 1)
        assert torch.all(sign * ((V + d) @ u) <= sign * closed + 1e-5)


def _targeted(model, split, eps, scale="absolute", steps=10):
    U, V = _tables(model, split)
    target, exclude = held_out(split, "test")
    return targeted_attack(U, V, target, exclude, TargetedAttack(eps, scale=scale, steps=steps), ks=(10,))[1]


def test_radius_zero_is_clean_and_more_radius_is_never_weaker(trained):  # noqa: F811
    split, model = trained
    clean = evaluate_model(model, split, "test", EV)["ndcg@10"]
    got = [_targeted(model, split, eps)["ndcg@10"].mean().item() for eps in (0.0, 0.05, 0.1, 0.25)]
    assert got[0] == pytest.approx(clean, abs=1e-6)
    assert all(b <= a + 1e-6 for a, b in zip(got, got[1:])) and got[-1] < 0.5 * clean, got


@pytest.mark.parametrize("scale,eps", [("absolute", 0.1), ("relative", 0.05)])
def test_at_least_as_strong_as_the_shared_ranking_attacks(trained, scale, eps):  # noqa: F811
    split, model = trained
    U, V = _tables(model, split)
    target, exclude = held_out(split, "test")
    shared = torch.stack([ranking_attack(U, V, target, exclude, RankingAttack(o, eps, scale=scale, steps=20))
                          .per_user["ndcg@10"] for o in ("listwise", "margin")]).min(0).values
    targeted = _targeted(model, split, eps, scale)["ndcg@10"]
    assert targeted.mean() < shared.mean() - 0.02, (targeted.mean(), shared.mean())


def test_reported_beside_the_worst_case_not_inside_it(trained):  # noqa: F811
    split, model = trained
    cfg = RobustnessConfig(eps_absolute=(0.1,), eps_relative=(), steps=(1,), ranking_steps=5, ranking_restarts=1,
                           strong_eps_absolute=(), strong_eps_relative=(), per_user_eps_absolute=(0.05, 0.1),
                           per_user_eps_relative=(0.05,), per_user_steps=5)
    result, _ = evaluate_robustness({"m": model}, split, cfg, EV, progress=False)
    r = result.models["m"]
    assert {(t.norm, t.scale, t.eps) for t in r.per_user} == {
        ("l2", "absolute", 0.05), ("l2", "absolute", 0.1), ("l2", "relative", 0.05),
        ("linf", "absolute", 0.05 * 0.125), ("linf", "absolute", 0.1 * 0.125), ("linf", "relative", 0.05 * 0.125)}
    assert all(t.ndcg_kept < 1.0 for t in r.per_user)
    names = {n for w in r.worst_case for n in w.worst_for}
    assert not any("per-user" in n for n in names) and not any("per-user" in n for n in result.grid)
    off, _ = evaluate_robustness({"m": model}, split, cfg.model_copy(update={"per_user_attack": False}), EV,
                                 progress=False)
    assert off.models["m"].per_user == [] and off.models["m"].worst_case == r.worst_case
