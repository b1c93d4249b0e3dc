"""The GAN-trained detector, user-weighted fine-tuning and the poisoning evaluation on small data."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_poisoning import synthetic_interactions

from rrec_core.attacks import bpr_loss
from rrec_core.config import AdversarialConfig, FinetuneConfig, MFConfig, PoisoningEvalConfig, ScreenConfig, SplitConfig
from rrec_core.data.split import split_interactions
from rrec_core.evaluation.poisoning import evaluate_poisoning, poisoned_split
from rrec_core.poisoning import inject_attack
from rrec_core.poisoning.detector import FakeDetector, suspicion_weights, train_detector
from rrec_core.reporting.poisoning import plot_poisoning, poisoning_frame, poisoning_markdown
from rrec_core.results import PoisoningResult

LOOP = {"lr": 0.01, "batch_size": 256, "epochs": 6, "patience": 3, "device": "cpu", "seed": 0}
TINY = {"embedding_dim": 16, **LOOP}


def _auc(p: pd.Series, positive: set) -> float:
    pos = p[p.index.isin(positive)].to_numpy()
    neg = p[~p.index.isin(positive)].to_numpy()
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions(n_users=300, n_items=300, seed=1, ratings=False)


@pytest.fixture(scope="module")
def detector(data):
    train = inject_attack(data, attack="bandwagon", fake_ratio=0.05, seed=11, n_targets=4)
    return train_detector(data, train.injected, ScreenConfig())


def test_detector_scores_unseen_fakes_above_real_users(data, detector):
    # fitted on one bandwagon injection; judged on others with other targets and seeds
    for attack, seed in (("bandwagon", 5), ("segment", 6)):
        p = inject_attack(data, attack=attack, fake_ratio=0.05, seed=seed, n_targets=4)
        scores = detector.predict(p.interactions)
        assert _auc(scores, set(p.fake_users)) > 0.9, attack
        assert scores[~scores.index.isin(p.fake_users)].mean() < 0.2


def test_detector_round_trips_through_json(data, detector):
    again = FakeDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    pd.testing.assert_series_equal(again.predict(data), detector.predict(data))
    assert detector.fit["fakes"] == 15 and detector.fit["train_accuracy"] > 0.9


def test_detector_rejects_fake_ids_that_are_real(data):
    fake = data[data["user_id"] == "u1"]
    with pytest.raises(ValueError, match="also occur among the real users"):
        train_detector(data, fake)


def test_weighted_bpr_loss_ignores_zero_weight_users():
    torch.manual_seed(0)
    u = torch.randn(6, 4, requires_grad=True)
    p, n = torch.randn(6, 4), torch.randn(6, 4)
    assert torch.allclose(bpr_loss(u, p, n, torch.ones(6)), bpr_loss(u, p, n))
    w = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    bpr_loss(u, p, n, w).backward()
    assert torch.all(u.grad[[2, 4]] == 0) and torch.all(u.grad[[0, 1, 3, 5]].abs().sum(1) > 0)


def test_poisoned_split_appends_fakes_to_train_only(data):
    split = split_interactions(data, SplitConfig())
    p = inject_attack(data, attack="random", fake_ratio=0.05, seed=2)
    s = poisoned_split(split, p.injected)
    assert s.user_ids[:split.n_users] == split.user_ids and s.n_users == split.n_users + len(p.fake_users)
    assert len(s.train) == len(split.train) + len(p.injected.drop_duplicates(["user_id", "item_id"]))
    assert np.array_equal(s.valid, split.valid) and np.array_equal(s.test, split.test)
    # quarantined: fakes vanish entirely, a real user keeps its index but loses its training rows
    real = split.user_ids[0]
    d = poisoned_split(split, p.injected, drop_users=[*p.fake_users, real])
    assert d.user_ids == split.user_ids
    assert not (d.train[:, 0] == 0).any() and len(d.train) == (split.train[:, 0] != 0).sum()


def test_suspicion_weights_down_weight_injected_users(data, detector):
    split = split_interactions(data, SplitConfig())
    p = inject_attack(data, attack="bandwagon", fake_ratio=0.05, seed=8, n_targets=4)
    s = poisoned_split(split, p.injected)
    w, prob = suspicion_weights(detector, s)
    assert w.shape == (s.n_users,) and torch.all((w >= 0) & (w <= 1))
    fake = torch.as_tensor(pd.Index(s.user_ids).isin(p.fake_users))
    assert w[fake].mean() < w[~fake].mean() - 0.3


def test_evaluate_poisoning_runs_every_arm(data, detector, tmp_path):
    inter = data.assign(timestamp=np.arange(len(data), dtype=np.int64))
    split = split_interactions(inter, SplitConfig())
    cfg = PoisoningEvalConfig(attacks=("bandwagon",), fake_ratio=0.05, n_targets=3, seed=4)
    adv = AdversarialConfig(steps=2, select_attack_steps=2, min_clean_ratio=0.5,
                            train=FinetuneConfig(**{**LOOP, "epochs": 3}))
    r, seconds = evaluate_poisoning(inter, split, cfg, ScreenConfig(), MFConfig(**TINY), adv, detector)
    res = r.attacks["bandwagon"]
    assert set(res.arms) == {"undefended", "gan_ft", "robust", "defended"} and res.detector is not None
    assert res.n_fake == 15 and len(r.targets) == 3 and set(seconds) >= {"clean", "bandwagon/defended"}
    for arm in ("undefended", "gan_ft", "robust", "defended"):
        for stage in ("pretrained", "adversarial"):
            m = getattr(res.arms[arm], stage)
            assert 0 <= m["target_hit@10"] <= m["target_hit@50"] <= 1 and 0 < m["ndcg@10"] <= 1
    # the attack moves its targets up for the undefended model (real users only)
    und, dfd = res.arms["undefended"].pretrained, res.arms["defended"].pretrained
    assert und["prediction_shift"] > 0.05
    # gan_ft and robust share the undefended pretraining: same pretrained numbers; robust fine-tunes
    # with its own radii (VAT-style, eps 2), so its adversarial model differs
    assert res.arms["gan_ft"].pretrained == und and res.arms["robust"].pretrained == und
    assert res.arms["robust"].adversarial != res.arms["undefended"].adversarial
    # the screen catches every fake and nobody else on this data, so the defended pretraining is the
    # clean one, exactly (poisoned_split drops the quarantined fakes; same tables, same initialization)
    assert res.screen.recall == 1.0 and res.screen.precision == 1.0
    assert dfd["prediction_shift"] == 0.0 and dfd["ndcg@10_change"] == 0.0
    assert PoisoningResult.from_json(r.to_json()) == r  # typed result round-trips JSON
    frame = poisoning_frame(r)
    assert set(frame["arm"]) == {"clean", "undefended", "gan_ft", "robust", "defended"}
    # no robust overrides: no robust arm
    r2, _ = evaluate_poisoning(inter, split, cfg.model_copy(update={"robust": {}, "attacks": ("random",)}), ScreenConfig(),
                               MFConfig(**TINY), adv, None)
    assert set(r2.attacks["random"].arms) == {"undefended", "defended"}
    md = poisoning_markdown(r)
    assert md.startswith("## Data poisoning") and "| bandwagon |" in md
    assert plot_poisoning(r)[:8] == b"\x89PNG\r\n\x1a\n"


def test_defended_arm_reuses_gan_ft_only_when_the_screen_flags_nobody(data, detector):
    """With nobody flagged the defended arm is gan_ft's data and weights; reusing gan_ft's models must be what
    a retrain from scratch gives (same tables, seeds and weights), bit for bit."""
    from rrec_core.evaluation.poisoning import _history, _train_pipeline, inject
    from rrec_core.poisoning import poisoning_metrics

    inter = data.assign(timestamp=np.arange(len(data), dtype=np.int64))
    split = split_interactions(inter, SplitConfig())
    cfg = PoisoningEvalConfig(attacks=("bandwagon",), fake_ratio=0.05, n_targets=3, seed=4, robust={})
    adv = AdversarialConfig(steps=2, select_attack_steps=2, min_clean_ratio=0.5,
                            train=FinetuneConfig(**{**LOOP, "epochs": 3}))
    blind = ScreenConfig(min_group=10_000)  # no group is ever that large: nobody flagged
    r, seconds = evaluate_poisoning(inter, split, cfg, blind, MFConfig(**TINY), adv, detector)
    res = r.attacks["bandwagon"]
    assert res.screen.flagged == 0 and seconds["bandwagon/defended"] == 0.0
    assert res.arms["defended"] == res.arms["gan_ft"]
    # the retrain the reuse stands for
    poisoned = inject("bandwagon", inter, list(r.targets), cfg)
    dfd = poisoned_split(split, poisoned.injected, drop_users=[])
    pre, fine = _train_pipeline(dfd, MFConfig(**TINY), adv, suspicion_weights(detector, dfd)[0], progress=False)
    hist = _history(dfd)
    real = [str(u) for u in split.user_ids]
    for stage, model in (("pretrained", pre), ("adversarial", fine)):
        hit = poisoning_metrics(model, list(r.targets), hist, users=real)
        assert hit["target_hit@50"] == getattr(res.arms["defended"], stage)["target_hit@50"], stage
        assert hit["target_percentile"] == getattr(res.arms["defended"], stage)["target_percentile"], stage
    # a screen that flags: the defended arm is trained on its own data, not reused
    r2, s2 = evaluate_poisoning(inter, split, cfg, ScreenConfig(), MFConfig(**TINY), adv, detector)
    assert r2.attacks["bandwagon"].screen.flagged > 0 and s2["bandwagon/defended"] > 0
    assert r2.attacks["bandwagon"].arms["defended"] != r2.attacks["bandwagon"].arms["gan_ft"]
