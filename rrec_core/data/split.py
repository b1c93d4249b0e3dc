"""Train/validation/test splits with contiguous internal ids.

`ratio` reproduces RecBole's default protocol (per-user random order, 8:1:1, its rounding rule)
so our numbers compare with RecBole's; `loo` is temporal leave-one-out (last interaction of each
user to test, the one before to validation).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rrec_core.config import SplitConfig


@dataclass
class Split:
    user_ids: list[str]  # internal user index -> raw id
    item_ids: list[str]  # internal item index -> raw id
    train: np.ndarray  # [n_train, 2] int64 (user, item)
    valid: np.ndarray  # [n_valid, 2]
    test: np.ndarray  # [n_test, 2]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def to_frame(self) -> pd.DataFrame:
        parts = [pd.DataFrame({"user": a[:, 0], "item": a[:, 1], "part": name})
                 for name, a in (("train", self.train), ("valid", self.valid), ("test", self.test))]
        df = pd.concat(parts, ignore_index=True)
        df["user_id"] = np.asarray(self.user_ids, dtype=object)[df["user"].to_numpy()]
        df["item_id"] = np.asarray(self.item_ids, dtype=object)[df["item"].to_numpy()]
        return df

    def save(self, path: str | Path) -> None:
        from rrec_core.io import write_json, write_parquet

        path = Path(path)
        write_parquet(path / "split.parquet", self.to_frame())
        write_json(path / "ids.json", {"user_ids": self.user_ids, "item_ids": self.item_ids})

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        from rrec_core.io import read_json

        path = Path(path)
        ids = read_json(path / "ids.json")
        df = pd.read_parquet(path / "split.parquet")
        arr = {p: df.loc[df["part"] == p, ["user", "item"]].to_numpy(dtype=np.int64, copy=True)  # writable
               for p in ("train", "valid", "test")}
        return cls(ids["user_ids"], ids["item_ids"], arr["train"], arr["valid"], arr["test"])


def split_interactions(interactions: pd.DataFrame, cfg: SplitConfig,
                       item_universe: list[str] | None = None) -> Split:
    """Split interactions; `item_universe` (e.g. the item table) adds items nobody interacted with."""
    inter = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    user_ids = sorted(inter["user_id"].unique(), key=_natural)
    items = set(inter["item_id"].unique()) | set(item_universe or [])
    item_ids = sorted(items, key=_natural)
    uidx = pd.Index(user_ids).get_indexer(inter["user_id"])
    iidx = pd.Index(item_ids).get_indexer(inter["item_id"])
    pairs = np.stack([uidx, iidx], axis=1).astype(np.int64)
    ts = inter["timestamp"].to_numpy()

    rng = np.random.default_rng(cfg.seed)
    if cfg.strategy == "ratio":
        # shuffle globally, then a stable sort by user keeps the random order inside each user
        order = rng.permutation(len(pairs))
        order = order[np.argsort(uidx[order], kind="stable")]
    else:
        order = np.lexsort((np.arange(len(pairs)), ts, uidx))  # by user, then time (ties: file order)
    pairs = pairs[order]
    starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
    ends = np.r_[starts[1:], len(pairs)]
    part = np.empty(len(pairs), dtype=np.int8)
    for s, e in zip(starts, ends):
        n_train, n_valid, _ = _counts(e - s, cfg)
        part[s:s + n_train] = 0
        part[s + n_train:s + n_train + n_valid] = 1
        part[s + n_train + n_valid:e] = 2
    return Split(list(map(str, user_ids)), list(map(str, item_ids)),
                 pairs[part == 0], pairs[part == 1], pairs[part == 2])


def _counts(n: int, cfg: SplitConfig) -> tuple[int, int, int]:
    if cfg.strategy == "loo":
        if n < 3:
            return n, 0, 0
        return n - 2, 1, 1
    # RecBole's Dataset._calcu_split_ids: floor each part, give the rest to train, and bump a
    # part that would round to zero to one interaction while train keeps more than one
    ratios = np.asarray(cfg.ratios, dtype=float) / sum(cfg.ratios)
    cnt = [int(r * n) for r in ratios]
    cnt[0] = n - sum(cnt[1:])
    for i in range(1, len(ratios)):
        if cnt[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            cnt[-i] += 1
            cnt[0] -= 1
    return cnt[0], cnt[1], cnt[2]


def _natural(x: str):
    s = str(x)
    return (0, int(s), s) if s.isdigit() else (1, 0, s)
