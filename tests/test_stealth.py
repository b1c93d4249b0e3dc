"""The stealth classifiers: they find profiles that differ from real ones, and only those."""
import numpy as np
import pytest
from test_poisoning import synthetic_interactions

from rrec_core.poisoning import inject_attack
from rrec_core.poisoning.stealth import stealth_auc


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions(n_users=200, n_items=250, seed=3, ratings=False)


def test_random_fakes_are_found(data):
    p = inject_attack(data, attack="random", fake_ratio=0.1, seed=0, n_targets=1)
    st = stealth_auc(p.interactions, p.fake_users, p.targets)
    assert st["stealth_auc"] > 0.9  # uniform fillers against Zipf tastes
    assert st["feature_auc"] > 0.9


def test_real_users_called_fake_are_not_found(data):
    """Twenty real users labelled fake: nothing tells them apart, the AUC stays near 0.5."""
    users = sorted(data["user_id"].unique())
    rng = np.random.default_rng(0)
    aucs = [stealth_auc(data, rng.choice(users, 20, replace=False), seed=s)["stealth_auc"] for s in range(3)]
    assert np.mean(aucs) < 0.68


def test_stealth_needs_both_classes(data):
    with pytest.raises(ValueError, match="two fake"):
        stealth_auc(data, ["u1"])
