"""Stealth of injected profiles: how well a classifier trained to tell real from fake profiles does.

The screen (screen.py) is one fixed, unsupervised detector; an attack that evades it may still be easy
to spot. Here a supervised classifier is fitted on labelled profiles (the attacker's fakes against the
real users) and scored out of fold: 0.5 means the fakes cannot be told apart, 1.0 that every fake is
found. Two views of a profile:

  features  logistic regression on the screen's per-user statistics (profile_features: length,
            popularity mean/std, tail share, RDMA/WDMA, neighbour similarity, co-occurrence burst),
            computed on the poisoned table the recommender trains on
  items     logistic regression on the binary item vector itself (L2), the targets left out: every
            push profile holds them, so with them the AUC is ~1.0 for every attack (measured); the
            question is whether the rest of a fake profile looks real

Stratified k-fold keeps every fake out of the fold that scores it; with a few dozen fakes the AUC
has a standard error of a few points, so it is reported with the fold spread. scikit-learn is used for
the classifiers and folds (a kept library; the screen and detector stay numpy/torch).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rrec_core.config import ScreenConfig
from rrec_core.poisoning.screen import LOG_FEATURES, profile_features

FEATURES = ("length", "pop_mean", "pop_std", "tail_frac", "rdma", "wdma", "degsim", "co_burst")


def stealth_auc(poisoned: pd.DataFrame, fake_users, targets=(), screen: ScreenConfig | None = None,
                folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Out-of-fold ROC AUC of real-vs-fake classifiers on the users of `poisoned` (real + injected rows).

    Returns feature_auc, item_auc (each the AUC of the pooled out-of-fold scores), their fold standard
    deviations, stealth_auc = the larger of the two (the better detector decides), and the profile
    length mean / std of the fakes beside the real users'."""
    inter = poisoned[["user_id", "item_id"]].astype(str).drop_duplicates()
    fake = set(map(str, fake_users))
    feats = profile_features(inter, screen or ScreenConfig())
    users = feats.index.astype(str)
    y = users.isin(fake).astype(int)
    n_fake = int(y.sum())
    if n_fake < 2 or n_fake > len(y) - 2:
        raise ValueError(f"stealth needs at least two fake and two real users; got {n_fake} of {len(y)}")
    folds = int(min(folds, n_fake))
    x = feats[list(FEATURES)].astype(float).copy()
    for c in FEATURES:
        if c in LOG_FEATURES:
            x[c] = np.log(x[c].clip(lower=1e-12))
    rest = inter[~inter["item_id"].isin(set(map(str, targets)))]
    items = pd.Index(sorted(rest["item_id"].unique()))
    row = pd.Index(users).get_indexer(rest["user_id"])
    B = sparse.csr_matrix((np.ones(len(rest)), (row, items.get_indexer(rest["item_id"]))),
                          shape=(len(users), len(items)))
    out: dict[str, float] = {}
    for name, X, model in (
            ("feature", x.to_numpy(), lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
            ("item", B, lambda: LogisticRegression(C=0.1, max_iter=2000))):
        score = np.zeros(len(y))
        per_fold = []
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
            clf = model().fit(X[tr], y[tr])
            score[te] = clf.predict_proba(X[te])[:, 1]
            per_fold.append(roc_auc_score(y[te], score[te]))
        out[f"{name}_auc"] = float(roc_auc_score(y, score))
        out[f"{name}_auc_fold_std"] = float(np.std(per_fold))
    out["stealth_auc"] = max(out["feature_auc"], out["item_auc"])
    lengths = inter.groupby("user_id").size()
    is_fake = lengths.index.isin(fake)
    out.update(fake_length_mean=float(lengths[is_fake].mean()), fake_length_std=float(lengths[is_fake].std(ddof=0)),
               real_length_mean=float(lengths[~is_fake].mean()), real_length_std=float(lengths[~is_fake].std(ddof=0)))
    return out
