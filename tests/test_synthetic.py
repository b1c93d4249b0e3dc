"""The synthetic data generator (issue 10): the shape it promises, the files the loaders read, validation."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rrec_core.data.synthetic import GENRES, T1, SyntheticSpec, generate, parse_count, shape_stats, synthesize


@pytest.fixture(scope="module")
def data_40k():
    return generate(SyntheticSpec(40_000, seed=5))


def test_counts_and_ids_are_as_specified(data_40k):
    inter, items = data_40k
    spec = SyntheticSpec(40_000).resolved()
    assert len(inter) == 40_000
    assert inter["user_id"].nunique() == spec.n_users and len(items) == spec.n_items
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert set(inter["item_id"]) <= set(items["item_id"])
    assert inter.groupby("user_id").size().min() >= spec.min_activity


def test_shape_is_that_of_real_data(data_40k):
    inter, _ = data_40k
    s = shape_stats(inter)
    # MovieLens-100K: user activity CV 0.95, item popularity log-log slope -0.85, Gini 0.63, rating mean 3.53
    assert s["user_cv"] > 0.7, s            # heavy-tailed activity, not every user alike
    assert -1.3 < s["item_rank_slope"] < -0.5, s  # power-law popularity, neither uniform nor a handful of items
    assert s["item_gini"] > 0.4 and s["item_top1pct_share"] > 0.04, s
    assert 3.0 < s["rating_mean"] < 4.0 and 0.8 < s["rating_sd"] < 1.3, s
    assert set(np.unique(inter["rating"])) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def _top_genre_share(inter: pd.DataFrame, items: pd.DataFrame) -> float:
    primary = items.set_index("item_id")["genres"].str.split(" ").str[0]
    g = inter.assign(genre=inter["item_id"].map(primary))
    return float(g.groupby("user_id")["genre"].agg(lambda s: s.value_counts(normalize=True).iloc[0]).mean())


def test_users_have_concentrated_tastes(data_40k):
    """Latent structure a recommender can learn: a user's items come mostly from a few genres, far more
    than in the same data drawn with tastes spread evenly (the control)."""
    spread = generate(SyntheticSpec(40_000, seed=5, taste_concentration=1000.0))
    assert _top_genre_share(*data_40k) > 1.5 * _top_genre_share(*spread)


def test_timestamps_increase_per_user_and_stay_in_the_past(data_40k):
    inter, _ = data_40k
    assert inter["timestamp"].max() <= T1
    assert inter.groupby("user_id")["timestamp"].apply(lambda t: t.is_monotonic_increasing).all()


def test_item_text_names_the_genre(data_40k):
    _, items = data_40k
    first = items["genres"].str.split(" ").str[0]
    assert first.isin(GENRES).all() and items["title"].str.len().gt(2).all()
    assert items["year"].between(1920, 2019).all()
    assert items["title"].nunique() > 0.5 * len(items)


def test_a_seed_gives_the_same_data_and_another_seed_other_data():
    a, _ = generate(SyntheticSpec(20_000, seed=1))
    b, _ = generate(SyntheticSpec(20_000, seed=1))
    c, _ = generate(SyntheticSpec(20_000, seed=2))
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_parse_count():
    assert parse_count("1M") == 1_000_000 and parse_count("250k") == 250_000 and parse_count("1_000") == 1000
    assert parse_count("2.5m") == 2_500_000
    with pytest.raises(ValueError, match="not a count"):
        parse_count("lots")


def test_impossible_spec_is_refused():
    with pytest.raises(ValueError, match="cannot give"):
        SyntheticSpec(100, n_users=50).resolved()


def test_written_files_go_through_the_pipeline_validation_and_split(tmp_path):
    """The pipeline reads the synthetic data through data.path like any other atomic data set: GX
    validation passes, the screen quarantines (almost) nobody on clean data, the split keeps every user."""
    from rrec_core import pipeline
    from rrec_core.config import DataConfig, SplitConfig, ValidationConfig

    out = tmp_path / "data" / "synthetic-20k"
    got = synthesize(SyntheticSpec(20_000, seed=3, name="synthetic-20k"), out)
    assert sorted(p.name for p in out.iterdir()) == ["synthetic-20k.inter", "synthetic-20k.item", "synthetic.json"]
    assert json.loads((out / "synthetic.json").read_text())["stats"]["interactions"] == 20_000
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    raw = pipeline.load_raw_data(DataConfig(path=str(out)), root=".")
    assert len(raw.dataset.interactions) == 20_000
    data = pipeline.validate_and_split(raw, ValidationConfig(), SplitConfig())
    n_users = got["stats"]["users"]
    assert len(data.quarantine) <= 0.01 * n_users, data.quarantine.head()
    assert data.split.n_users >= n_users - len(data.quarantine)
    assert len(data.split.train) + len(data.split.valid) + len(data.split.test) >= 0.98 * 20_000


def test_rewriting_replaces_the_folder_whole(tmp_path):
    out = tmp_path / "syn"
    synthesize(SyntheticSpec(5_000, seed=0, name="a"), out)
    synthesize(SyntheticSpec(5_000, seed=0, name="b"), out)
    assert sorted(p.name for p in out.iterdir()) == ["b.inter", "b.item", "synthetic.json"]


def test_cli_writes_a_dataset_and_rejects_a_bad_count(tmp_path, capsys):
    from orchestration.cli import main

    assert main(["data", "synthetic", "--interactions", "8k", "--out", str(tmp_path / "s8k")]) == 0
    assert "8,000 interactions" in capsys.readouterr().out
    assert (tmp_path / "s8k" / "s8k.inter").exists()
    assert main(["data", "synthetic", "--interactions", "8x", "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
