"""Shilling attacks, the poisoning screen and poisoning metrics on small generated data."""
import numpy as np
import pandas as pd
import pydantic
import pytest
import torch

from rrec_core.poisoning import (
    ATTACKS,
    ScreenConfig,
    ShillingConfig,
    detection_metrics,
    inject_attack,
    poisoning_metrics,
    prediction_shift,
    profile_features,
    screen_users,
    select_targets,
    target_ranks,
)


def synthetic_interactions(n_users=200, n_items=300, seed=0, ratings=True) -> pd.DataFrame:
    """Zipf item popularity, four taste clusters, 20-40 distinct items per user, in rrec's contract."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_items + 1) ** 0.9
    cluster = rng.integers(0, 4, n_items)
    users, items, rats, ts = [], [], [], []
    for u in range(n_users):
        p = w * np.where(cluster == u % 4, 3.0, 1.0)
        chosen = rng.choice(n_items, rng.integers(20, 41), replace=False, p=p / p.sum())
        users += [f"u{u}"] * len(chosen)
        items += [f"i{i}" for i in chosen]
        rats += rng.integers(1, 6, len(chosen)).astype(float).tolist()
        ts += (1_000_000 + 100 * u + np.arange(len(chosen))).tolist()
    df = pd.DataFrame({"user_id": users, "item_id": items, "rating": rats,
                       "timestamp": np.asarray(ts, dtype=np.int64)})
    return df if ratings else df.drop(columns="rating")


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions()


# --- attacks ----------------------------------------------------------------------------------

@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("ratio", [0.01, 0.03, 0.05])
def test_attack_injects_asked_profiles(data, attack, ratio):
    p = inject_attack(data, ShillingConfig(attack=attack, fake_ratio=ratio, seed=3))
    n_fake = max(1, round(ratio * data["user_id"].nunique()))
    assert len(p.fake_users) == n_fake == len(set(p.fake_users))
    assert all(u.startswith(f"fake-{attack}-") for u in p.fake_users)
    out = p.interactions
    pd.testing.assert_frame_equal(out.iloc[:len(data)], data)  # real rows untouched
    assert list(out.dtypes) == list(data.dtypes)
    assert not out.duplicated(["user_id", "item_id"]).any()
    assert out.index.is_unique
    inj = p.injected
    assert set(inj["user_id"]) == set(p.fake_users) and len(inj) == len(out) - len(data)
    assert inj["timestamp"].min() > data["timestamp"].max()
    held = inj.groupby("user_id")["item_id"].apply(set)
    assert all(set(p.targets) <= s for s in held)
    real_lengths = set(data.groupby("user_id").size())
    assert set(inj.groupby("user_id").size()) <= real_lengths  # lengths drawn from the real ones
    assert inj["item_id"].isin(set(data["item_id"])).all()
    assert inj["rating"].between(1, 5).all() and (inj["rating"] % 1 == 0).all()
    top = inj[inj["item_id"].isin(p.targets)]["rating"]
    assert (top == 5).all()  # push: targets get the maximum rating
    if attack in ("bandwagon", "segment"):
        assert len(p.selected) == 10 and all(set(p.selected) <= s for s in held)
        assert (inj[inj["item_id"].isin(p.selected)]["rating"] == 5).all()
    if attack == "segment":
        filler = inj[~inj["item_id"].isin(set(p.targets) | set(p.selected))]["rating"]
        assert (filler == 1).all()  # segment fillers get the minimum


def test_attack_options(data):
    implicit = data.drop(columns="rating")
    p = inject_attack(implicit, attack="random", fake_ratio=0.05, targets=["i250", "i260"], filler_size=12, seed=1)
    assert p.targets == ["i250", "i260"] and "rating" not in p.interactions
    assert (p.injected.groupby("user_id").size() == 14).all()
    mean_len = round(data.groupby("user_id").size().mean())
    q = inject_attack(data, attack="bandwagon", fake_ratio=0.05, profile_lengths="mean", seed=1)
    assert (q.injected.groupby("user_id").size() == mean_len).all()  # the old constant length
    # lengths follow the real distribution: spread like the real ones, not one constant
    r = inject_attack(data, attack="bandwagon", fake_ratio=0.2, seed=1).injected.groupby("user_id").size()
    real = data.groupby("user_id").size()
    assert r.std() > 0.5 * real.std() and abs(r.mean() - real.mean()) < 3
    # deterministic given the seed, different across seeds
    a = inject_attack(data, attack="average", seed=5).interactions
    b = inject_attack(data, attack="average", seed=5).interactions
    c = inject_attack(data, attack="average", seed=6).interactions
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    # bandwagon: selected items are the most popular ones
    pop = data.groupby("item_id").size().sort_values(ascending=False, kind="stable")
    sel = inject_attack(data, attack="bandwagon", n_selected=3).selected
    assert set(sel) <= set(pop.index[:5]) and pop[sel].min() >= pop.iloc[2]
    with pytest.raises(pydantic.ValidationError):
        ShillingConfig(attack="random", unknown=1)


def test_default_targets_are_unpopular(data):
    pop = data.groupby("item_id").size()
    t = select_targets(data, 5, (0.1, 0.3), 5, seed=0)
    lo, hi = np.quantile(pop, [0.1, 0.3])
    assert len(set(t)) == 5 and all(max(lo, 5) <= pop[i] <= max(hi, 5) for i in t)
    assert select_targets(data, 5, seed=0) == t and select_targets(data, 5, seed=1) != t


# --- screen -----------------------------------------------------------------------------------

def test_profile_features_hand_checked():
    df = pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "z", "x"],
                       "rating": [5.0, 3.0, 1.0, 4.0, 3.0], "timestamp": np.arange(5, dtype=np.int64)})
    f = profile_features(df, ScreenConfig(neighbours=1))
    assert list(f.index) == ["a", "b", "c"]
    assert f.loc["a", "length"] == 2 and f.loc["c", "length"] == 1
    # item means: x = 3, y = 3, z = 4; NR: x = 3, y = 1, z = 1
    assert f.loc["a", "rdma"] == pytest.approx((2 / 3 + 0 / 1) / 2)
    assert f.loc["b", "rdma"] == pytest.approx((2 / 3 + 0) / 2)
    assert f.loc["a", "wdma"] == pytest.approx((2 / 9) / 2)
    assert f.loc["a", "wda"] == pytest.approx(2 / 3)
    assert f.loc["a", "mean_var"] == pytest.approx(2.0)
    # cosine: a.c = 1/sqrt(2), a.b = 1/2; with k = 1 degsim is the best neighbour
    assert f.loc["a", "degsim"] == pytest.approx(1 / np.sqrt(2))
    assert f.loc["c", "degsim"] == pytest.approx(1 / np.sqrt(2))
    implicit = profile_features(df.drop(columns="rating"), ScreenConfig(neighbours=1))
    assert "mean_var" not in implicit and implicit.loc["a", "rdma"] == pytest.approx((1 / 3 + 1) / 2)


@pytest.mark.parametrize("ratings", [True, False])
@pytest.mark.parametrize("attack", ATTACKS)
def test_screen_flags_injected_users(attack, ratings):
    df = synthetic_interactions(seed=1, ratings=ratings)
    p = inject_attack(df, ShillingConfig(attack=attack, fake_ratio=0.05, seed=2))
    r = screen_users(p.interactions)
    m = detection_metrics(r.flagged, p.fake_users)
    base_rate = len(p.fake_users) / p.interactions["user_id"].nunique()  # ~0.048
    assert base_rate < 0.05
    # seeded, deterministic: every fake caught and nobody else, for every attack, with and without ratings
    assert m["recall"] == 1.0 and m["precision"] == 1.0
    assert set(r.target_items) == set(p.targets)
    assert set(r.scores.index) == set(p.interactions["user_id"]) and (r.scores[r.flagged] >= 1).all()
    kept, quarantined = r.quarantine(p.interactions)
    assert len(kept) + len(quarantined) == len(p.interactions)
    assert set(quarantined["user_id"]) == set(r.flagged) and not kept["user_id"].isin(r.flagged).any()


def test_screen_leaves_clean_data_alone(data):
    r = screen_users(data)
    assert r.flagged == [] and r.target_items == []
    assert {"anomaly", "target_share", "z_degsim"} <= set(r.features.columns)


def test_approximate_degsim_is_the_exact_one_where_it_finds_the_neighbours():
    """Approximate neighbours (SVD candidates, exact cosine rerank): with every user a candidate it is the
    exact feature; with 60 candidates of 315 users (k = 25) it is never above it and within 1% on average
    (measured 0.5%; 40 candidates at rank 16: 3%); the injected profiles keep the highest degsim."""
    from rrec_core.poisoning.screen import _degsim, _matrix

    p = inject_attack(synthetic_interactions(seed=4, n_users=300), ShillingConfig(attack="bandwagon",
                                                                                    fake_ratio=0.05, seed=1))
    m = _matrix(p.interactions)
    exact = _degsim(m, ScreenConfig(degsim="exact"))
    every = _degsim(m, ScreenConfig(degsim="approximate", degsim_candidates=m.shape[0]))
    np.testing.assert_allclose(every, exact, atol=1e-6)
    approx = _degsim(m, ScreenConfig(degsim="approximate", degsim_candidates=60, degsim_rank=32))
    assert np.all(approx <= exact + 1e-6) and np.mean((exact - approx) / exact) < 0.01
    assert np.corrcoef(approx, exact)[0, 1] > 0.995
    fake = np.isin(m.user_ids, p.fake_users)
    assert approx[fake].min() > np.quantile(approx[~fake], 0.9)
    auto = _degsim(m, ScreenConfig(degsim_exact_max_users=100, degsim_candidates=60, degsim_rank=32))
    np.testing.assert_array_equal(auto, approx)  # auto switches above the user count, seeded


def test_co_burst_is_the_largest_pair_z_score_in_the_profile():
    """With every item a partner, co_burst is the brute-force maximum over the profile's item pairs of the
    Poisson z-score (c_ij - e_ij) / sqrt(e_ij), e_ij = pop_i pop_j / n_users (dense reference)."""
    from rrec_core.poisoning.screen import _co_burst, _matrix

    df = synthetic_interactions(seed=6, n_users=60, n_items=40)
    m = _matrix(df)
    n_users, n_items = m.shape
    X = np.zeros((n_users, n_items))
    X[m.u, m.i] = 1.0
    pop = X.sum(0)
    c = X.T @ X
    e = np.outer(pop, pop) / n_users
    z = np.where(c > 0, (c - e) / np.sqrt(np.maximum(e, 1e-12)), -np.inf)
    np.fill_diagonal(z, -np.inf)
    want = np.array([max(0.0, z[np.ix_(X[u] > 0, X[u] > 0)].max()) if X[u].sum() > 1 else 0.0
                     for u in range(n_users)])
    got = _co_burst(m, pop, ScreenConfig(co_partners=n_items - 1, batch=7))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_coordination_separates_an_injection_from_a_taste_cluster():
    from rrec_core.poisoning.screen import coordination

    rng = np.random.default_rng(0)
    injected = np.zeros((3, 200))
    injected[:, :20] = 1.0  # 20 fakes hold all three targets
    injected[rng.random((3, 200)) < 0.05] = 1.0  # and a few real users hold one each
    fans = (rng.random((3, 200)) < 0.4).astype(float)  # real users of one taste: each holds some
    assert coordination(injected) > 0.5 > 0.2 > coordination(fans)


def test_a_group_that_users_outside_the_pools_hold_whole_is_organic_and_flags_nobody():
    """Injected targets are co-held only by the injected profiles (in the pools); a trilogy is also held whole by
    real users nobody suspects. ML-100K: an injection that shifted the co_burst pool made "Three Colors" (items
    59-61) a target group, 23 of its 44 full holders outside the pools, and 64 real users were quarantined."""
    from rrec_core.poisoning.screen import _matrix, _target_groups

    rows = [(f"u{u}", i) for u in range(10) for i in ("t1", "t2", "t3")]  # 10 fakes in the pools, all targets
    rows += [(f"u{u}", i) for u in range(20, 60) for i in ("a", "b", "c")]  # 40 fans of a trilogy
    rows += [(f"u{u}", "t1") for u in range(60, 64)]  # a few real holders of one target
    rows += [(f"u{u}", "z") for u in range(100)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id"]).assign(timestamp=0)
    m = _matrix(df)
    pos = {str(u): k for k, u in enumerate(m.user_ids)}
    suspects = np.zeros(m.shape[0], bool)
    suspects[[pos[f"u{u}"] for u in list(range(10)) + list(range(20, 50))]] = True  # 10 of the 40 fans outside
    item = {str(i): k for k, i in enumerate(m.item_ids)}
    cand = np.asarray(sorted(item[i] for i in ("t1", "t2", "t3", "a", "b", "c")))
    name = lambda groups: [sorted(str(m.item_ids[i]) for i in g) for g in groups]  # noqa: E731
    groups, organic = _target_groups(m, cand, ScreenConfig(organic_holders=5), suspects)
    assert name(groups) == [["t1", "t2", "t3"]] and name(organic) == [["a", "b", "c"]]
    groups, organic = _target_groups(m, cand, ScreenConfig(organic_holders=11), suspects)  # 10 outside: not enough
    assert len(groups) == 2 and organic == []
    groups, organic = _target_groups(m, cand, ScreenConfig(organic_holders=0), suspects)  # the check off
    assert len(groups) == 2 and organic == []


def test_screen_leaves_a_large_clean_data_set_with_taste_clusters_alone():
    """700K synthetic interactions (5,000 users): the pools hold some genre's head items far above the rank-1
    null, so candidate targets appear; without the coordination check they formed a group and the screen
    flagged 316 users (6.3%). Real tastes must not look like an injection."""
    from rrec_core.data.synthetic import SyntheticSpec, generate

    inter, _ = generate(SyntheticSpec(700_000, seed=0))
    r = screen_users(inter)
    assert r.item_tests["candidate"].sum() >= 3  # the data still sets off the item tests
    assert len(r.flagged) <= 0.01 * inter["user_id"].nunique() and r.target_items == []


# --- metrics ----------------------------------------------------------------------------------

def test_detection_metrics():
    m = detection_metrics(["a", "b", "c", "d"], ["a", "b", "x"])
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(4 / 7)
    assert detection_metrics([], ["a"])["f1"] == 0.0


class ToyModel:
    """score(users) from a fixed matrix, with raw id maps, as the metrics expect."""

    def __init__(self, scores, user_ids, item_ids):
        self.s, self.user_ids, self.item_ids = torch.as_tensor(scores, dtype=torch.float32), user_ids, item_ids

    def score(self, users):
        return self.s[users]


def test_poisoning_metrics_on_toy_scores():
    items = ["t", "a", "b", "c", "d"]
    # u0 ranks t 1st of 5; u1 has interacted with a: t is 2nd of 4 candidates; u2 ranks t last;
    # u3 interacted with t (not eligible); fake is excluded
    S = [[9, 1, 2, 3, 4],
         [3, 9, 4, 1, 2],
         [0, 1, 2, 3, 4],
         [5, 1, 2, 3, 4],
         [9, 0, 0, 0, 0]]
    model = ToyModel(S, ["u0", "u1", "u2", "u3", "fake"], items)
    hist = pd.DataFrame({"user_id": ["u1", "u3", "fake"], "item_id": ["a", "t", "t"]})
    r = target_ranks(model, ["t"], hist, exclude_users=["fake"]).set_index("user_id")
    assert list(r["rank"][["u0", "u1", "u2"]]) == [1, 2, 5]
    assert list(r["n_candidates"]) == [5, 4, 5, 4] and not r.loc["u3", "eligible"]
    assert list(r["percentile"][["u0", "u1", "u2"]]) == pytest.approx([1.0, 2 / 3, 0.0])
    m = poisoning_metrics(model, ["t"], hist, exclude_users=["fake"], ks=(1, 2), exposure_k=2)
    assert m["target_hit@1"] == pytest.approx(1 / 3) and m["target_hit@2"] == pytest.approx(2 / 3)
    assert m["target_exposure@2"] == pytest.approx(2 / 4)  # u3 counts among real users, without exposure
    assert m["target_percentile"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    # hit@k is averaged over targets: a second target that everybody ranks first
    S2 = np.concatenate([np.asarray(S, float), np.full((5, 1), 100.0)], 1)
    m2 = poisoning_metrics(ToyModel(S2, model.user_ids, items + ["t2"]), ["t", "t2"], hist,
                           exclude_users=["fake"], ks=(1,), exposure_k=1)
    assert m2["target_hit@1"] == pytest.approx((0 + 1) / 2) and m2["target_exposure@1"] == 1.0  # t2 now beats t
    # prediction shift: the poisoned model lifts t to first place for u2 (percentile 0 -> 1)
    P = [row[:] for row in S]
    P[2] = [9, 1, 2, 3, 4]
    poisoned = ToyModel(P, model.user_ids, items)
    assert prediction_shift(model, poisoned, ["t"], hist, hist, users=["u0", "u1", "u2", "u3"]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        target_ranks(model, ["nope"], hist)


def test_poisoning_raises_target_hit_rate_of_undefended_mf():
    """Retraining MF-BPR on bandwagon-poisoned data pushes the targets into real users' top lists; the
    screen's quarantine undoes it. (A random attack barely moves MF: its fake users share nothing with
    real ones, so the targets drift toward a direction no real user points at; measured shift +0.007 here.)"""
    from rrec_core.config import EvalConfig, MFConfig, SplitConfig
    from rrec_core.data.split import split_interactions
    from rrec_core.training.loop import build_model, train_recommender

    torch.set_num_threads(1)
    df = synthetic_interactions(seed=4)
    cfg = MFConfig(embedding_dim=16, lr=0.01, batch_size=256, epochs=20, patience=100, device="cpu", eval_every=20)
    ev = EvalConfig(ks=(10,))

    def fit(inter):
        split = split_interactions(inter, SplitConfig(seed=0))
        return train_recommender(build_model("mf_bpr", split, cfg), split, cfg, ev, progress=False).model, split

    p = inject_attack(df, ShillingConfig(attack="bandwagon", fake_ratio=0.05, seed=0))
    clean, clean_split = fit(df)
    poisoned, poisoned_split = fit(p.interactions)
    before = poisoning_metrics(clean, p.targets, clean_split)
    after = poisoning_metrics(poisoned, p.targets, poisoned_split, exclude_users=p.fake_users)
    # measured: hit@10 0.002 -> 0.022, hit@50 0.029 -> 0.154, exposure@50 0.125 -> 0.415, shift +0.20
    assert after["target_hit@10"] > 3 * before["target_hit@10"]
    assert after["target_hit@50"] > before["target_hit@50"] + 0.08
    assert after["target_exposure@50"] > before["target_exposure@50"] + 0.15
    assert prediction_shift(clean, poisoned, p.targets, clean_split, poisoned_split) > 0.05
    kept, _ = screen_users(p.interactions).quarantine(p.interactions)
    defended, defended_split = fit(kept)
    assert poisoning_metrics(defended, p.targets, defended_split)["target_hit@50"] < after["target_hit@50"] - 0.08
