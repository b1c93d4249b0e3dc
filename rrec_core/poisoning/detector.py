"""A fake-profile detector trained on GAN samples, and the per-user weights it gives fine-tuning.

Why beside the screen (screen.py): the screen is unsupervised and all-or-nothing — it flags users
holding a detected target group and misses an injection whose target group it does not detect. The
GAN's generated profiles are labelled fakes for free: a logistic model over the screen's profile
features, fitted on them against the real users, scores every training user with P(fake). The
adversarial fine-tuning then weights each user's BPR pairs by 1 - P(fake): soft (nobody is dropped),
so the model does not follow profiles that look generated. It is judged only on attacks it was not
fitted on (heuristic attacks; GAN fakes with other targets and seeds).

A logistic model on 8 standardized features is written here with torch (L-BFGS), not taken from a
library: the project has no scikit-learn, and this is the whole model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rrec_core.config import ScreenConfig
from rrec_core.poisoning.screen import LOG_FEATURES, profile_features

FEATURES = ("length", "pop_mean", "pop_std", "tail_frac", "rdma", "wdma", "degsim", "co_burst")


def _design(features: pd.DataFrame, columns) -> np.ndarray:
    x = features[list(columns)].astype(float).copy()
    for c in columns:
        if c in LOG_FEATURES:
            x[c] = np.log(x[c].clip(lower=1e-12))
    return x.to_numpy()


@dataclass
class FakeDetector:
    columns: list[str]
    center: list[float]
    scale: list[float]
    coef: list[float]
    bias: float
    screen: dict = field(default_factory=dict)  # the ScreenConfig the features are computed with
    fit: dict = field(default_factory=dict)  # training summary: users, fakes, loss, training accuracy

    def predict(self, interactions: pd.DataFrame) -> pd.Series:
        """P(fake) per user of `interactions` (user_id, item_id; ratings ignored: implicit features)."""
        feats = profile_features(interactions[["user_id", "item_id"]], ScreenConfig(**self.screen))
        z = (_design(feats, self.columns) - np.asarray(self.center)) / np.asarray(self.scale)
        logit = z @ np.asarray(self.coef) + self.bias
        return pd.Series(1.0 / (1.0 + np.exp(-logit)), index=feats.index, name="p_fake")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("columns", "center", "scale", "coef", "bias", "screen", "fit")}

    @classmethod
    def from_dict(cls, d: dict) -> "FakeDetector":
        return cls(**d)


def train_detector(real: pd.DataFrame, fakes: pd.DataFrame, screen: ScreenConfig | None = None,
                   l2: float = 1e-3, seed: int = 0) -> FakeDetector:
    """Fit P(fake | profile features) on real users (label 0) and generated profiles (label 1), the
    features computed on the real and fake interactions together, as they will be at prediction."""
    screen = screen or ScreenConfig()
    fake_ids = set(fakes["user_id"].astype(str))
    clash = fake_ids & set(real["user_id"].astype(str))
    if clash:
        raise ValueError(f"fake user ids also occur among the real users: {sorted(clash)[:5]}")
    inter = pd.concat([real[["user_id", "item_id"]].astype(str), fakes[["user_id", "item_id"]].astype(str)],
                      ignore_index=True)
    feats = profile_features(inter, screen)
    cols = [c for c in FEATURES if c in feats]
    x = _design(feats, cols)
    center, scale = x.mean(0), x.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    X = torch.as_tensor((x - center) / scale, dtype=torch.float64)
    y = torch.as_tensor(feats.index.astype(str).isin(fake_ids), dtype=torch.float64)
    torch.manual_seed(seed)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, y) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logit = X @ w + b
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(logit, y))
        acc = float(((logit > 0).double() == y).double().mean())
    return FakeDetector(cols, center.tolist(), scale.tolist(), w.detach().tolist(), float(b.detach()),
                        screen.model_dump(mode="json"),
                        {"users": int(len(y)), "fakes": int(y.sum()), "loss": loss, "train_accuracy": acc})


def suspicion_weights(detector: FakeDetector, split) -> tuple[torch.Tensor, pd.Series]:
    """(weights [split.n_users] = 1 - P(fake) from the training interactions, P(fake) per user id);
    users without training rows get weight 1."""
    from rrec_core.poisoning.metrics import _history_frame

    p = detector.predict(_history_frame(split))
    p_all = p.reindex([str(u) for u in split.user_ids]).fillna(0.0)
    return torch.as_tensor(1.0 - p_all.to_numpy(), dtype=torch.float32), p_all
