import numpy as np
import pandas as pd

from rrec_core.config import SplitConfig
from rrec_core.data.split import Split, _counts, split_interactions


def _frame(n_users=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(5, 40))
        for i in rng.choice(200, n, replace=False):
            rows.append((f"u{u}", f"i{i}", 3.0, 1000 * u + int(rng.integers(0, 10_000))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _pairs(a):
    return set(map(tuple, a.tolist()))


def test_recbole_rounding_rule():
    cfg = SplitConfig()
    assert _counts(10, cfg) == (8, 1, 1)
    assert _counts(20, cfg) == (16, 2, 2)
    assert _counts(5, cfg) == (3, 1, 1)  # 0.5 rounds down to zero, then is bumped to one
    assert _counts(2, cfg) == (1, 0, 1)  # RecBole gives the last share its one item before the middle one


def test_ratio_split_is_a_partition_without_leakage():
    df = _frame()
    sp = split_interactions(df, SplitConfig())
    tr, va, te = _pairs(sp.train), _pairs(sp.valid), _pairs(sp.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr) + len(va) + len(te) == len(df)
    for u in range(sp.n_users):  # every user keeps ~80% in train
        n_u = sum(1 for p in tr | va | te if p[0] == u)
        assert sum(1 for p in tr if p[0] == u) == _counts(n_u, SplitConfig())[0]


def test_split_is_seeded():
    df = _frame()
    a = split_interactions(df, SplitConfig(seed=1))
    b = split_interactions(df, SplitConfig(seed=1))
    c = split_interactions(df, SplitConfig(seed=2))
    assert np.array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


def test_loo_holds_out_the_latest_interactions():
    df = _frame()
    sp = split_interactions(df, SplitConfig(strategy="loo"))
    uid = {u: k for k, u in enumerate(sp.user_ids)}
    for user, g in df.groupby("user_id"):
        g = g.sort_values("timestamp")
        u = uid[user]
        test_item = sp.item_ids[int(sp.test[sp.test[:, 0] == u][0, 1])]
        valid_item = sp.item_ids[int(sp.valid[sp.valid[:, 0] == u][0, 1])]
        assert test_item == g["item_id"].iloc[-1] and valid_item == g["item_id"].iloc[-2]


def test_item_universe_and_roundtrip(tmp_path):
    df = _frame()
    sp = split_interactions(df, SplitConfig(), item_universe=["cold-item"])
    assert "cold-item" in sp.item_ids
    sp.save(tmp_path)
    back = Split.load(tmp_path)
    assert back.item_ids == sp.item_ids and np.array_equal(back.train, sp.train)
