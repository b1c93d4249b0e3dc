"""Item cold start: a split in which some items have no training interaction at all.

The items held out are drawn at random among the items with interactions, then halved: all
interactions of a *validation-cold* item go to validation, all of a *test-cold* item to test, so
model selection can look at cold items without ever seeing a test-cold one (the protocol of
DropoutNet / Heater / CLCRec). The warm items keep the pipeline's own split unchanged, so warm
numbers compare with the warm-only pipeline's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rrec_core.data.split import Split


@dataclass
class ColdStartSplit:
    split: Split  # train holds no interaction of a cold item
    cold_valid: np.ndarray  # internal ids of the validation-cold items, sorted
    cold_test: np.ndarray  # internal ids of the test-cold items, sorted

    @property
    def cold_items(self) -> np.ndarray:
        return np.union1d(self.cold_valid, self.cold_test)


def hold_out_items(split: Split, share: float, seed: int, items: np.ndarray | list[int] | None = None
                   ) -> ColdStartSplit:
    """Hold out `share` of the items that have interactions (or exactly `items`, internal ids): every
    interaction of a held-out item leaves train; the first half (in random order) goes to validation,
    the second to test."""
    every = np.concatenate([split.train, split.valid, split.test])
    seen = np.unique(every[:, 1])
    rng = np.random.default_rng(seed)
    if items is None:
        if not 0.0 < share < 1.0:
            raise ValueError(f"cold-start item share must be in (0, 1), got {share}")
        chosen = rng.permutation(seen)[: max(2, int(round(share * len(seen))))]
    else:
        chosen = np.asarray(items, dtype=np.int64)
        unknown = np.setdiff1d(chosen, seen)
        if len(unknown):
            raise ValueError(f"cold-start items without any interaction cannot be evaluated: {unknown[:10].tolist()}")
        chosen = rng.permutation(np.unique(chosen))
    if len(chosen) < 2:
        raise ValueError("cold start needs at least two held-out items (one for validation, one for test)")
    half = len(chosen) // 2
    cold_valid, cold_test = np.sort(chosen[:half]), np.sort(chosen[half:])

    def keep(pairs: np.ndarray, drop: np.ndarray) -> np.ndarray:
        return pairs[~np.isin(pairs[:, 1], drop)]

    def take(items_: np.ndarray) -> np.ndarray:
        return every[np.isin(every[:, 1], items_)]

    train = keep(split.train, chosen)
    valid = _user_sorted(np.concatenate([keep(split.valid, chosen), take(cold_valid)]))
    test = _user_sorted(np.concatenate([keep(split.test, chosen), take(cold_test)]))
    return ColdStartSplit(Split(list(split.user_ids), list(split.item_ids), train, valid, test), cold_valid, cold_test)


def _user_sorted(pairs: np.ndarray) -> np.ndarray:
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))].astype(np.int64, copy=False)
