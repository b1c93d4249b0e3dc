"""Detectors judged only on attack families they were not tuned on (leave one family out).

A screen tuned on the attacks it is scored on reports its own setting back. Here every detector is a pair
(fit, flag): `fit` sees the trials of the tuning families only and returns a fitted detector; `flag` is
then applied to the trials of the one held-out family. `held_out_family_scores` enforces the split: it
hands `fit` the tuning trials and nothing else, and records which families each fit saw, so a test (or a
reader of the result) can check that no detector was scored on a family it saw.

Two detectors:

  screen      the unsupervised screen (screen.py); "fit" picks the ScreenConfig of a small grid
              (min_group, family_error, pool_fraction) with the best mean F1 on the tuning trials, among
              the configs that flag at most `max_clean_share` of the users of clean data when it is given
  supervised  logistic regression on the screen's profile features (stealth.FEATURES), trained on the
              tuning trials' fakes against their real users; its P(fake) threshold is the one with the
              best F1 on the tuning trials

A trial is one injection (family, fake ratio, seed) into the real data; obfuscated variants
(shilling.obfuscate) count as their own family ("bandwagon+noise"), so leaving out "bandwagon" still
lets "bandwagon+noise" be seen: use `family_of` to group variants under their base attack.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Any, Callable

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rrec_core.config import ScreenConfig
from rrec_core.poisoning.metrics import detection_metrics
from rrec_core.poisoning.screen import LOG_FEATURES, profile_features, screen_users
from rrec_core.poisoning.shilling import PoisonedData
from rrec_core.poisoning.stealth import FEATURES


@dataclass
class Trial:
    family: str  # base attack (the unit left out)
    variant: str  # e.g. "bandwagon+noise"
    ratio: float
    seed: int
    poisoned: PoisonedData
    _features: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def features(self) -> pd.DataFrame:
        """Screen features of every user of the poisoned table (cached), with a `fake` label column."""
        if self._features is None:
            f = profile_features(self.poisoned.interactions[["user_id", "item_id"]].astype(str))
            f["fake"] = f.index.astype(str).isin(set(self.poisoned.fake_users))
            self._features = f
        return self._features


def family_of(variant: str) -> str:
    return variant.split("+", 1)[0]


@dataclass
class Detector:
    name: str
    fit: Callable[[list[Trial]], Any]
    flag: Callable[[Any, Trial], list[str]]
    describe: Callable[[Any], dict] = lambda fitted: {}


def held_out_family_scores(trials: list[Trial], detectors: list[Detector]) -> pd.DataFrame:
    """One row per (detector, held-out family, trial): precision, recall, f1, real users flagged, the
    families the detector's fit saw, and what was fitted (`describe`)."""
    families = sorted({t.family for t in trials})
    rows = []
    for det in detectors:
        for held in families:
            tuning = [t for t in trials if t.family != held]
            seen = sorted({t.family for t in tuning})
            if not tuning or held in seen:
                raise AssertionError(f"{det.name}: no tuning trials without {held!r}")
            fitted = det.fit(tuning)
            for t in (t for t in trials if t.family == held):
                flagged = det.flag(fitted, t)
                m = detection_metrics(flagged, t.poisoned.fake_users)
                n_real = int(len(set(flagged) - set(t.poisoned.fake_users)))
                rows.append({"detector": det.name, "held_out": held, "variant": t.variant, "ratio": t.ratio,
                             "seed": t.seed, "n_fake": len(t.poisoned.fake_users), **m, "real_flagged": n_real,
                             "tuned_on": ",".join(seen), **det.describe(fitted)})
    return pd.DataFrame(rows)


def clean_false_positives(clean: pd.DataFrame, trials: list[Trial], detectors: list[Detector]) -> pd.DataFrame:
    """Share of users flagged on data without an attack, each detector fitted on all trials."""
    out = []
    n = clean["user_id"].nunique()
    clean_trial = Trial("none", "none", 0.0, 0, PoisonedData(clean, [], [], "none"))
    for det in detectors:
        flagged = det.flag(det.fit(trials), clean_trial)
        out.append({"detector": det.name, "flagged": len(flagged), "share": len(flagged) / max(n, 1)})
    return pd.DataFrame(out)


# --- the screen, tuned on a grid --------------------------------------------------------------------

SCREEN_GRID = {"min_group": (1, 2, 3), "family_error": (0.01, 0.05), "pool_fraction": (0.05, 0.1, 0.2)}


def screen_detector(base: ScreenConfig | None = None, grid: dict | None = None, clean: pd.DataFrame | None = None,
                    max_clean_share: float = 0.01) -> Detector:
    """The screen with its config tuned on the tuning families; with `clean` (data without an attack,
    which no family owns), configs flagging more than `max_clean_share` of its users are never picked
    (if all do, the one flagging fewest): F1 on attacked data alone rewards flagging many real users."""
    base = base or ScreenConfig()
    grid = grid or SCREEN_GRID
    configs = [base.model_copy(update=dict(zip(grid, values))) for values in product(*grid.values())]
    cache: dict[tuple[int, int], list[str]] = {}
    allowed = list(range(len(configs)))
    if clean is not None:
        n = max(clean["user_id"].nunique(), 1)
        share = [len(screen_users(clean, c).flagged) / n for c in configs]
        allowed = [i for i in allowed if share[i] <= max_clean_share] or [int(np.argmin(share))]

    def run(cfg_i: int, t: Trial) -> list[str]:
        key = (cfg_i, id(t))
        if key not in cache:
            cache[key] = screen_users(t.poisoned.interactions, configs[cfg_i]).flagged
        return cache[key]

    def fit(tuning: list[Trial]) -> int:
        f1 = [np.mean([detection_metrics(run(i, t), t.poisoned.fake_users)["f1"] for t in tuning]) for i in allowed]
        return allowed[int(np.argmax(f1))]  # ties: the first allowed config

    def flag(i: int, t: Trial) -> list[str]:
        return run(i, t) if t.poisoned.fake_users else screen_users(t.poisoned.interactions, configs[i]).flagged

    def describe(i: int) -> dict:
        return {k: getattr(configs[i], k) for k in grid}

    return Detector("screen", fit, flag, describe)


# --- a supervised detector on profile features --------------------------------------------------------

def _design(f: pd.DataFrame) -> np.ndarray:
    x = f[list(FEATURES)].astype(float).copy()
    for c in FEATURES:
        if c in LOG_FEATURES:
            x[c] = np.log(x[c].clip(lower=1e-12))
    return x.to_numpy()


def supervised_detector(C: float = 1.0) -> Detector:
    def fit(tuning: list[Trial]):
        X = np.concatenate([_design(t.features) for t in tuning])
        y = np.concatenate([t.features["fake"].to_numpy() for t in tuning]).astype(int)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, class_weight="balanced")).fit(X, y)
        p = model.predict_proba(X)[:, 1]
        grid = np.unique(np.quantile(p, np.linspace(0.5, 0.999, 200)))
        f1 = []
        for thr in grid:  # the threshold with the best mean F1 over the tuning trials
            scores = []
            start = 0
            for t in tuning:
                n = len(t.features)
                pt = p[start:start + n]
                start += n
                flagged = t.features.index[pt > thr].astype(str)
                scores.append(detection_metrics(flagged, t.poisoned.fake_users)["f1"])
            f1.append(np.mean(scores))
        return model, float(grid[int(np.argmax(f1))])

    def flag(fitted, t: Trial) -> list[str]:
        model, thr = fitted
        p = model.predict_proba(_design(t.features))[:, 1]
        return sorted(t.features.index[p > thr].astype(str))

    def describe(fitted) -> dict:
        return {"threshold": fitted[1]}

    return Detector("supervised", fit, flag, describe)
