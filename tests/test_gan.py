"""GAN fake-profile generator (rrec_core.poisoning.gan) on small generated data."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rrec_core.poisoning.gan import (
    GanConfig,
    GanResult,
    _straight_through_topk,
    gan_attack,
    generate_profiles,
    load_generator,
    save_generator,
    stealth_stats,
    train_gan,
)
from rrec_core.poisoning.shilling import PoisonedData

torch.set_num_threads(1)

SMALL = dict(epochs=4, pretrain_epochs=5, hidden=32, noise_dim=8, batch_size=32, eval_users=64, calibrate_draws=1)


def zipf_interactions(n_users=150, n_items=200, seed=0, ratings=False) -> pd.DataFrame:
    """Zipf(1.0) item popularity, two taste halves, 15-30 distinct items per user, rrec's contract."""
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, n_items + 1)
    half = np.arange(n_items) % 2
    users, items, ts = [], [], []
    for u in range(n_users):
        p = w * np.where(half == u % 2, 3.0, 1.0)
        chosen = rng.choice(n_items, rng.integers(15, 31), replace=False, p=p / p.sum())
        users += [f"u{u}"] * len(chosen)
        items += [f"i{i}" for i in chosen]
        ts += (1_000_000 + 100 * u + np.arange(len(chosen))).tolist()
    df = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": np.asarray(ts, dtype=np.int64)})
    if ratings:
        df.insert(2, "rating", rng.integers(1, 6, len(df)).astype(np.float64))
    return df


@pytest.fixture(scope="module")
def data():
    return zipf_interactions()


@pytest.fixture(scope="module")
def trained(data):
    return train_gan(data, GanConfig(seed=7, **SMALL))


TARGETS = ["i150", "i170", "i190"]


def test_training_log(trained):
    assert isinstance(trained, GanResult) and trained.seconds > 0
    assert len(trained.item_ids) == 200 and trained.item_ids == sorted(trained.item_ids)
    phases = [r["phase"] for r in trained.log]
    assert phases == ["pretrain"] * 5 + ["gan"] * 4 + ["calibrate"]
    gan = [r for r in trained.log if r["phase"] == "gan"]
    assert [r["epoch"] for r in gan] == [1, 2, 3, 4]
    for r in gan:
        for key in ("g_loss", "d_loss", "d_acc", "d_auc", "wasserstein", "gp", "seconds"):
            assert math.isfinite(r[key]), key
        assert 0.0 <= r["d_acc"] <= 1.0 and 0.0 <= r["d_auc"] <= 1.0
    # Measured on this data (seed 7; the same with 1 or 2 threads), by epoch:
    #   d_loss 7.06 3.54 0.84 0.24, gp 0.706 0.355 0.086 0.027, wasserstein 0.0011 0.0064 0.011 0.024,
    #   d_auc 0.533 0.534 0.520 0.521. The critic learns: its loss (mostly the gradient penalty) falls
    # ~30x, in every epoch, and its Wasserstein estimate turns positive and grows; meanwhile the
    # warm-started G keeps it near chance. Bounds: ~3x the measured ratios, ~2x the final estimate.
    d_loss = [r["d_loss"] for r in gan]
    assert all(b < a for a, b in zip(d_loss, d_loss[1:])), d_loss
    assert d_loss[-1] < 0.1 * d_loss[0], d_loss
    gp = [r["gp"] for r in gan]
    assert gp[-1] < 0.1 * gp[0], gp
    w = [r["wasserstein"] for r in gan]
    assert w[-1] > 0.012 and w[-1] > w[0], w
    assert all(0.45 < r["d_auc"] < 0.6 for r in gan), [r["d_auc"] for r in gan]
    # G is trained in the adversarial phase too: its skip weight moves every epoch
    # (measured 0.0475 0.0472 0.0481 0.0510; it would stay put without generator steps)
    copy = [r["copy"] for r in gan]
    assert all(abs(b - a) > 1e-4 for a, b in zip(copy, copy[1:])) and max(copy) - min(copy) > 1e-3, copy
    # the warm start: G's output bias starts at log popularity, so its denoising NLL starts at (and in
    # 5 epochs stays near) that of popularity sampling, 106.43 nats per template here (measured
    # 105.86 .. 106.48); a generator that lost the popularity start would be near uniform, 118.2
    nll = [r["g_nll"] for r in trained.log if r["phase"] == "pretrain"]
    X = trained.templates()
    popularity_nll = float(-(torch.log(X.sum(0) / X.sum()) * X).sum(1).mean())
    assert popularity_nll == pytest.approx(106.43, abs=0.01)
    assert len(nll) == 5 and all(math.isfinite(v) and abs(v - popularity_nll) < 1.0 for v in nll), nll
    calib = trained.log[-1]
    assert len(calib["tv_rounds"]) == trained.config.calibrate_rounds + 1
    json.dumps(trained.log)  # plain JSON-able numbers


def test_generated_profiles(trained, data):
    fake = generate_profiles(trained, TARGETS, 9, seed=1)
    assert list(fake.columns) == ["user_id", "item_id", "timestamp"]  # implicit data: no rating column
    assert fake["timestamp"].dtype == np.int64 and fake["timestamp"].min() > data["timestamp"].max()
    assert fake["timestamp"].is_unique
    assert sorted(fake["user_id"].unique()) == sorted(f"fake-gan-{k}" for k in range(9))
    assert not fake.duplicated(["user_id", "item_id"]).any()
    held = fake.groupby("user_id")["item_id"].apply(set)
    assert all(set(TARGETS) <= s for s in held)
    mean_len = round(data.groupby("user_id").size().mean())
    assert (fake.groupby("user_id").size() == mean_len).all()  # filler = mean length - targets
    assert fake["item_id"].isin(set(data["item_id"])).all()
    # fillers are not copies of each other
    fills = [frozenset(s - set(TARGETS)) for s in held]
    assert len(set(fills)) == len(fills)
    # ...and follow the real item distribution: TV distance 0.115 measured for 150 fakes (the
    # sampling floor of 150 x 22 draws is about 0.1), against 0.40 for uniform fillers
    many = generate_profiles(trained, TARGETS, 150, seed=1)
    assert stealth_stats(data, many, exclude_items=TARGETS)["tv_distance"] < 0.15
    # explicit filler size, and a target outside the catalogue still lands in every profile
    other = generate_profiles(trained, ["i150", "new-item"], 4, seed=2, filler_size=10)
    assert (other.groupby("user_id").size() == 12).all()
    assert (other.groupby("user_id")["item_id"].apply(lambda s: {"i150", "new-item"} <= set(s))).all()
    assert generate_profiles(trained, TARGETS, 0, seed=0).empty
    with pytest.raises(ValueError, match="duplicate"):
        generate_profiles(trained, ["i1", "i1"], 2)


def test_gan_attack_poisoned_data(trained, data):
    p = gan_attack(data, TARGETS, GanConfig(seed=7, fake_ratio=0.05, **SMALL), result=trained)
    assert isinstance(p, PoisonedData) and p.attack == "gan" and p.targets == TARGETS
    assert len(p.fake_users) == round(0.05 * 150) == len(set(p.fake_users))
    out = p.interactions
    pd.testing.assert_frame_equal(out.iloc[:len(data)], data)  # real rows untouched
    assert list(out.dtypes) == list(data.dtypes) and out.index.is_unique
    assert not out.duplicated(["user_id", "item_id"]).any()
    inj = p.injected
    assert set(inj["user_id"]) == set(p.fake_users)
    assert all(set(TARGETS) <= s for s in inj.groupby("user_id")["item_id"].apply(set))
    assert out.attrs["poisoning"]["attack"] == "gan"
    # profile lengths are drawn from the real ones (profile_lengths: real, the default), not one constant
    lengths = inj.groupby("user_id").size()
    assert set(lengths) <= set(data.groupby("user_id").size()) and lengths.nunique() > 1
    m = gan_attack(data, TARGETS, GanConfig(seed=7, fake_ratio=0.05, profile_lengths="mean", **SMALL), result=trained)
    assert (m.injected.groupby("user_id").size() == round(data.groupby("user_id").size().mean())).all()
    # with ratings: every injected row gets the maximum rating; default targets come from select_targets
    rated = zipf_interactions(seed=1, ratings=True)
    q = gan_attack(rated, None, GanConfig(seed=3, n_targets=4, **SMALL))
    assert len(q.targets) == 4 and (q.injected["rating"] == rated["rating"].max()).all()
    assert q.interactions["rating"].dtype == np.float64
    assert len(q.fake_users) == max(1, round(0.03 * 150))
    with pytest.raises(ValueError, match="already exist"):
        gan_attack(pd.concat([data, data.assign(user_id="fake-gan-0").iloc[:3]]), TARGETS, result=trained)


def test_save_load_round_trip(trained, tmp_path):
    path = save_generator(trained, tmp_path / "gan")
    assert sorted(f.name for f in path.iterdir()) == ["gan.json", "gan.safetensors"]  # no pickle, no temp files
    loaded = load_generator(path)
    assert loaded.item_ids == trained.item_ids and loaded.log == json.loads(json.dumps(trained.log))
    assert loaded.config == trained.config and loaded.meta == trained.meta
    for k, v in trained.generator.state_dict().items():
        assert torch.equal(v, loaded.generator.state_dict()[k])
    pd.testing.assert_frame_equal(generate_profiles(trained, TARGETS, 6, seed=4),
                                  generate_profiles(loaded, TARGETS, 6, seed=4))
    (path / "gan.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not an rrec GAN"):
        load_generator(path)


def test_seeded_runs_reproducible(trained, data):
    again = train_gan(data, GanConfig(seed=7, **SMALL))
    strip = [{k: v for k, v in r.items() if "seconds" not in k} for r in trained.log]
    assert [{k: v for k, v in r.items() if "seconds" not in k} for r in again.log] == strip
    pd.testing.assert_frame_equal(generate_profiles(trained, TARGETS, 5, seed=0),
                                  generate_profiles(again, TARGETS, 5, seed=0))
    other = train_gan(data, GanConfig(seed=8, **SMALL))
    assert not generate_profiles(other, TARGETS, 5, seed=0).equals(generate_profiles(trained, TARGETS, 5, seed=0))
    assert not generate_profiles(trained, TARGETS, 5, seed=1).equals(generate_profiles(trained, TARGETS, 5, seed=0))


def test_stealth_stats_by_hand():
    real = pd.DataFrame({"user_id": ["a", "a", "b", "b", "b", "b"], "item_id": ["x", "y", "x", "z", "w", "w"]})
    fake = pd.DataFrame({"user_id": ["f", "f", "g"], "item_id": ["x", "y", "y"]})
    s = stealth_stats(real, fake)
    # real pairs (duplicate b-w counts once): x 2/5, y 1/5, z 1/5, w 1/5; fake: x 1/3, y 2/3
    assert s["tv_distance"] == pytest.approx(0.5 * (abs(2 / 5 - 1 / 3) + abs(1 / 5 - 2 / 3) + 1 / 5 + 1 / 5))
    assert s["real_length_mean"] == 2.5 and s["real_length_std"] == 0.5
    assert s["fake_length_mean"] == 1.5 and s["fake_length_std"] == 0.5
    assert (s["n_real"], s["n_fake"]) == (2, 2)
    assert stealth_stats(real, real)["tv_distance"] == 0.0
    # excluding y renormalises over the rest: real x 2/4, z 1/4, w 1/4; fake x 1/1
    assert stealth_stats(real, fake, exclude_items=["y"])["tv_distance"] == pytest.approx(0.5 * (0.5 + 0.25 + 0.25))


def test_calibration_matches_item_distribution(trained):
    """The stealth step on a generator that ignores popularity (uniform output bias on Zipf data)."""
    from rrec_core.poisoning.gan import Generator, _calibrate

    X = trained.templates()
    p_real = X.sum(0) / X.sum()
    G = Generator(X.shape[1], 16, 4)
    with torch.no_grad():
        G.net[-1].weight.zero_()
        G.net[-1].bias.zero_()
    row = _calibrate(G, X, X.sum(1).long(), p_real, GanConfig(calibrate_rounds=3, calibrate_draws=4),
                     torch.Generator().manual_seed(0))
    # measured: TV 0.403 -> 0.099 -> 0.067 -> 0.054 (the floor of 150 x 4 x 22 draws is about 0.05):
    # the first round removes ~3/4 of the distance, and every round helps
    tv = row["tv_rounds"]
    assert len(tv) == 4 and tv[0] == row["tv_before"] and tv[-1] == row["tv_after"]
    assert 0.38 < tv[0] < 0.43  # uniform output vs Zipf(1.0) popularity, fixed by the data
    assert all(b < a for a, b in zip(tv, tv[1:])), tv
    assert tv[1] < 0.13 and tv[-1] < 0.075, tv


def test_straight_through_topk():
    s = torch.randn(5, 12, requires_grad=True)
    k = torch.tensor([1, 4, 12, 6, 2])
    h = _straight_through_topk(s, k, tau=0.5)
    ref = torch.zeros(5, 12).scatter_(1, torch.topk(s.detach(), 12).indices, (torch.arange(12)[None] < k[:, None]).float())
    assert torch.equal(h.detach().round(), ref)
    w = torch.randn(5, 12)
    (h * w).sum().backward()
    # backward: d/ds sigmoid((s - s_(k)) / tau), s_(k) the k-th largest entry of the row (a constant)
    kth = torch.stack([torch.topk(s.detach()[b], int(k[b])).values[-1] for b in range(5)])[:, None]
    z = torch.sigmoid((s.detach() - kth) / 0.5)
    torch.testing.assert_close(s.grad, w * z * (1 - z) / 0.5)


def test_config_is_strict():
    with pytest.raises(ValueError):
        GanConfig(epoch=3)
