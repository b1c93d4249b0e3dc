"""Leave-one-family-out judging of detectors, and the obfuscated attack variants."""
import numpy as np
import pandas as pd
import pytest
from test_poisoning import synthetic_interactions

from rrec_core.config import ScreenConfig
from rrec_core.poisoning import inject_attack, screen_users
from rrec_core.poisoning.protocol import (
    Detector,
    Trial,
    clean_false_positives,
    held_out_family_scores,
    screen_detector,
    supervised_detector,
)
from rrec_core.poisoning.shilling import obfuscate


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions(n_users=200, n_items=250, seed=5, ratings=False)


@pytest.fixture(scope="module")
def trials(data):
    out = []
    for fam in ("random", "bandwagon", "segment"):
        for seed in (1, 2):
            p = inject_attack(data, attack=fam, fake_ratio=0.05, seed=seed, n_targets=3)
            out.append(Trial(fam, fam, 0.05, seed, p))
    return out


def test_no_detector_is_scored_on_a_family_it_was_fitted_on(trials):
    seen = []

    def fit(tuning):
        seen.append({t.family for t in tuning})
        return None

    rows = held_out_family_scores(trials, [Detector("probe", fit, lambda fitted, t: [])])
    assert len(seen) == 3 and len(rows) == len(trials)
    for fam_seen, (_, row) in zip([s for s in seen for _ in range(2)], rows.iterrows()):
        assert row["held_out"] not in fam_seen
        assert row["tuned_on"] == ",".join(sorted(fam_seen))
    with pytest.raises(AssertionError, match="no tuning trials"):
        held_out_family_scores(trials[:2], [Detector("probe", fit, lambda fitted, t: [])])


def test_screen_and_supervised_detector_under_the_protocol(trials, data):
    rows = held_out_family_scores(trials, [screen_detector(grid={"min_group": (1, 3)}), supervised_detector()])
    assert set(rows["detector"]) == {"screen", "supervised"}
    screen = rows[rows["detector"] == "screen"]
    # five-percent, three-target injections on this table: the screen finds them from the other families' tuning
    assert screen["recall"].mean() > 0.8 and screen["precision"].mean() > 0.8
    sup = rows[rows["detector"] == "supervised"]
    # tuned on popularity-shaped fakes (bandwagon, segment) it misses uniform random fakes (measured:
    # recall 0.0), which is why only held-out scores are reported; on the other two it transfers
    assert sup[sup["held_out"] != "random"]["recall"].mean() > 0.5
    assert sup[sup["held_out"] != "random"]["precision"].mean() > 0.5  # base rate: 10 fakes in 210 users
    fp = clean_false_positives(data, trials, [screen_detector(grid={"min_group": (3,)})])
    assert fp["share"].iloc[0] <= 0.01
    # with clean data given, a config flagging more than 1% of its users is never picked, even where it
    # has the best F1 on the tuning families: here the "clean" table holds a 3-item co-pushed group that
    # min_group 1 flags and min_group 4 cannot
    clean = inject_attack(data, attack="bandwagon", fake_ratio=0.05, seed=9, n_targets=3).interactions
    grid = {"min_group": (1, 4)}
    assert len(screen_users(clean, ScreenConfig(min_group=1)).flagged) > 0.01 * clean["user_id"].nunique()
    unconstrained, constrained = screen_detector(grid=grid), screen_detector(grid=grid, clean=clean)
    assert unconstrained.describe(unconstrained.fit(trials))["min_group"] == 1
    assert constrained.describe(constrained.fit(trials))["min_group"] == 4


def test_obfuscations_keep_the_contract(data):
    p = inject_attack(data, attack="bandwagon", fake_ratio=0.05, seed=0, n_targets=1)
    lengths = p.injected.groupby("user_id").size()
    for kind in ("noise", "popular", "target_shift"):
        q = obfuscate(p, kind, 0.4, seed=1)
        inj = q.injected
        assert q.attack == f"bandwagon+{kind}" and q.fake_users == p.fake_users
        pd.testing.assert_frame_equal(q.interactions.iloc[:len(data)], data)
        assert not inj.duplicated(["user_id", "item_id"]).any() and q.interactions.index.is_unique
        assert inj["timestamp"].min() > data["timestamp"].max()
        holders = inj[inj["item_id"].isin(p.targets)]["user_id"].nunique()
        if kind == "target_shift":
            assert holders == len(p.fake_users) - round(0.4 * len(p.fake_users))
        else:
            assert holders == len(p.fake_users)
            pd.testing.assert_series_equal(inj.groupby("user_id").size(), lengths)
            changed = (p.injected.groupby("user_id")["item_id"].apply(set)
                       != inj.groupby("user_id")["item_id"].apply(set)).mean()
            assert changed > 0.9
    with pytest.raises(ValueError, match="unknown obfuscation"):
        obfuscate(p, "shuffle")
    assert np.isfinite(0)
