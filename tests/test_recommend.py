"""Recommendations out: top-k new items per user, history masked, unknown users named."""
import numpy as np
import pandas as pd
import pytest
import torch

from rrec_core.config import DataConfig, MFConfig, SplitConfig
from rrec_core.data import load_dataset
from rrec_core.data.split import split_interactions
from rrec_core.recommend import UnknownUserError, recommend, top_k
from rrec_core.training.loop import build_model


@pytest.fixture(scope="module")
def model_and_split(tmp_path_factory):
    from conftest import write_tiny_atomic

    root = tmp_path_factory.mktemp("rec")
    write_tiny_atomic(root / "data" / "tiny")
    ds = load_dataset(DataConfig(path="data/tiny"), root)
    split = split_interactions(ds.interactions, SplitConfig(), ds.items["item_id"].tolist())
    torch.manual_seed(0)
    model = build_model("mf_bpr", split, MFConfig(embedding_dim=8))
    return model, split, ds.items


def test_top_k_is_the_best_scored_items_outside_every_interaction(model_and_split):
    model, split, _ = model_and_split
    users, items, scores = top_k(model, split, [5, 0, 3], k=4)
    assert users.tolist() == [5, 0, 3]  # the order asked for
    history = np.concatenate([split.train, split.valid, split.test])
    with torch.no_grad():
        full = model.score(torch.tensor([5, 0, 3]))
    for row, u in enumerate([5, 0, 3]):
        seen = set(history[history[:, 0] == u, 1].tolist())
        s = full[row].clone()
        s[list(seen)] = float("-inf")
        assert items[row].tolist() == s.topk(4).indices.tolist()
        assert not seen & set(items[row].tolist())
        assert torch.all(scores[row][:-1] >= scores[row][1:])


def test_recommend_frame_has_raw_ids_titles_and_ranks(model_and_split):
    model, split, items = model_and_split
    u = split.user_ids[2]
    frame = recommend(model, split, items, [u, u], k=3)  # a repeated id is answered once
    assert list(frame.columns) == ["user_id", "rank", "item_id", "title", "score"]
    assert frame["user_id"].tolist() == [u] * 3 and frame["rank"].tolist() == [1, 2, 3]
    titles = dict(zip(items["item_id"], items["title"]))
    assert frame["title"].tolist() == [titles[i] for i in frame["item_id"]]
    everyone = recommend(model, split, items, None, k=2)
    assert len(everyone) == 2 * split.n_users


def test_unknown_and_quarantined_users_are_named(model_and_split):
    model, split, items = model_and_split
    quarantine = pd.DataFrame({"user_id": ["fake7"], "score": [3.0], "n_interactions": [40]})
    with pytest.raises(UnknownUserError) as err:
        recommend(model, split, items, [split.user_ids[0], "nobody", "fake7"], quarantine=quarantine)
    msg = str(err.value)
    assert "2 user id(s)" in msg and "'nobody': not a user" in msg and "'fake7': quarantined" in msg
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k(model, split, [0], k=0)


def test_k_above_the_unseen_items_gives_only_unseen_items(model_and_split):
    model, split, items = model_and_split
    frame = recommend(model, split, items, [split.user_ids[1]], k=split.n_items)
    history = np.concatenate([split.train, split.valid, split.test])
    n_seen = len(set(history[history[:, 0] == 1, 1].tolist()))
    assert len(frame) == split.n_items - n_seen and np.isfinite(frame["score"]).all()
