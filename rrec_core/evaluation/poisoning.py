"""Poisoning evaluation: inject an attack, retrain from scratch, measure what it did to real users.

For each attack in `cfg.attacks` (heuristic shilling attacks, the GAN and the gradient attack), fake users holding the
targets are injected into the data the validation stage sees; their interactions join the training
set (an attacker adds training data; the real users' validation and test rows stay as they are, so
every arm is measured on the same held-out pairs). Then, from scratch:

  clean       no attack: pretrained MF-BPR, then adversarial fine-tuning (the reference)
  undefended  poisoned data, no screen: pretrained, then plain adversarial fine-tuning
  gan_ft      poisoned data, no screen; fine-tuning weights users by 1 - P(fake) from the detector
              fitted on the gan_samples asset's profiles (the ablation: what the GAN adds alone)
  robust      poisoned data, no screen, no weights: fine-tuning with `cfg.robust` laid over the
              adversarial config (default VAT-style per-user radii at eps 2: a training-time defence that
              needs no detection; bench/poisoning_defence.py measured it against the gradient attack)
  defended    poisoned data, the validation stage's screen (flagged users' training rows dropped,
              real or fake), then fine-tuning with the GAN weights (the whole defence); when the screen
              flags nobody its data is gan_ft's, and gan_ft's models are reused (not retrained)

Measured on real users only: target HR@10 / HR@50 (per target, the fraction of real users who had
not interacted with it whose top-k holds it; mean over targets), exposure@50, the target percentile
and its shift from the clean model, and NDCG@10 on the real users' test pairs. Promotion is an arm's
target HR minus the clean model's (pretrained vs pretrained, adversarial vs adversarial).
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from rrec_core.config import AdversarialConfig, EvalConfig, MFConfig, PoisoningEvalConfig, ScreenConfig
from rrec_core.data.split import Split
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.poisoning.detector import FakeDetector, suspicion_weights
from rrec_core.poisoning.metrics import _history_frame as _history  # a Split's training pairs as a frame
from rrec_core.poisoning.metrics import detection_metrics, poisoning_metrics, prediction_shift
from rrec_core.results import DetectorScores, PoisoningAttackResult, PoisoningResult, ScreenDetection, StagePair
from rrec_core.training.adversarial import adversarial_finetune
from rrec_core.training.loop import build_model, train_recommender

log = logging.getLogger(__name__)
ARMS = ("clean", "undefended", "gan_ft", "robust", "defended")


def poisoned_split(split: Split, fakes: pd.DataFrame, drop_users=()) -> Split:
    """`split` with the fake users' interactions appended to train (new user indices after the real
    ones), and the training rows of `drop_users` (quarantined) removed. A quarantined fake user is
    not added at all, so a screen that catches every fake and nobody else trains exactly the clean
    model (same tables, same initialization); a quarantined real user keeps its index and held-out
    rows, so the screen's false positives cost what they cost."""
    drop = set(map(str, drop_users))
    fakes = fakes[["user_id", "item_id"]].astype(str).drop_duplicates()
    fakes = fakes[~fakes["user_id"].isin(drop)]
    new_users = [u for u in pd.unique(fakes["user_id"]) if u not in set(split.user_ids)]
    user_ids = list(split.user_ids) + new_users
    uidx = pd.Index(user_ids)
    iidx = pd.Index(split.item_ids)
    fi = iidx.get_indexer(fakes["item_id"])
    if (fi < 0).any():
        raise ValueError(f"fake profiles hold items outside the catalogue: {fakes['item_id'][fi < 0].unique()[:5]}")
    fake_pairs = np.stack([uidx.get_indexer(fakes["user_id"]), fi], 1).astype(np.int64)
    train = np.concatenate([np.asarray(split.train, dtype=np.int64).reshape(-1, 2), fake_pairs])
    if drop:
        d = uidx.get_indexer(sorted(drop))
        train = train[~np.isin(train[:, 0], d[d >= 0])]
    return Split(user_ids, list(split.item_ids), train, split.valid, split.test)


def _train_pipeline(split: Split, pre_cfg: MFConfig, adv_cfg: AdversarialConfig, weights: torch.Tensor | None,
                    progress: bool, pretrained=None):
    """(pretrained MF-BPR, its adversarial fine-tuning); `pretrained` given: only the fine-tuning."""
    ev = EvalConfig(ks=(10,))
    if pretrained is None:
        pretrained = build_model("mf_bpr", split, pre_cfg)
        pretrained = train_recommender(pretrained, split, pre_cfg, ev, progress=progress).model
    adversarial = adversarial_finetune(pretrained, split, adv_cfg, ev, progress=progress, user_weights=weights).model
    return pretrained, adversarial


def _real_ndcg(model, split: Split, n_real: int) -> float:
    real = replace(split, test=split.test[split.test[:, 0] < n_real], valid=split.valid[split.valid[:, 0] < n_real])
    return evaluate_model(model, real, "test", EvalConfig(ks=(10,)))["ndcg@10"]


def inject(name: str, interactions: pd.DataFrame, targets: list[str], cfg: PoisoningEvalConfig, gan_result=None):
    """One attack on `interactions` (PoisonedData): a heuristic shilling attack, the GAN, the GAN tuned for
    promotion or the gradient attack."""
    from rrec_core.poisoning.gan import gan_attack
    from rrec_core.poisoning.gradient import gradient_attack
    from rrec_core.poisoning.promotion_gan import promotion_gan_attack
    from rrec_core.poisoning.shilling import inject_attack

    if name == "gradient":
        return gradient_attack(interactions, targets=targets, cfg=cfg.gradient, fake_ratio=cfg.fake_ratio,
                               seed=cfg.seed, log=log.info)
    if name in ("gan", "gan_promotion") and gan_result is None:
        raise ValueError(f"the {name} attack needs the trained generator (gan_samples)")
    if name == "gan":
        return gan_attack(interactions, targets=targets, result=gan_result, fake_ratio=cfg.fake_ratio, seed=cfg.seed)
    if name == "gan_promotion":
        return promotion_gan_attack(interactions, gan_result, targets=targets, cfg=cfg.gan_promotion,
                                    fake_ratio=cfg.fake_ratio, seed=cfg.seed, log=log.info)
    return inject_attack(interactions, attack=name, targets=targets, fake_ratio=cfg.fake_ratio, seed=cfg.seed)


def evaluate_poisoning(interactions: pd.DataFrame, split: Split, cfg: PoisoningEvalConfig, screen: ScreenConfig,
                       pre_cfg: MFConfig, adv_cfg: AdversarialConfig, detector: FakeDetector | None,
                       gan_result=None, progress: bool = False) -> tuple[PoisoningResult, dict[str, float]]:
    """Run every attack and arm (module docstring): (the result, seconds per arm).

    interactions: the validated real interactions (what the validation stage screens); split: their
    train/valid/test split (the pipeline's); detector: fitted on GAN samples (None skips gan_ft and
    defends with the screen alone)."""
    from rrec_core.poisoning.screen import screen_users
    from rrec_core.poisoning.shilling import select_targets
    from rrec_core.poisoning.stealth import stealth_auc

    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    real = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    targets = [str(t) for t in (cfg.targets or select_targets(real, cfg.n_targets, seed=cfg.seed))]
    n_real = split.n_users
    real_users = [str(u) for u in split.user_ids]
    t0 = time.perf_counter()
    clean_pre, clean_adv = _train_pipeline(split, pre_cfg, adv_cfg, None, progress)
    clean_hist = _history(split)
    ref = {"pretrained": clean_pre, "adversarial": clean_adv}
    clean = {stage: {**poisoning_metrics(model, targets, clean_hist, users=real_users),
                     "ndcg@10": _real_ndcg(model, split, n_real)} for stage, model in ref.items()}
    seconds["clean"] = round(time.perf_counter() - t0, 1)
    attacks: dict[str, PoisoningAttackResult] = {}
    for attack in cfg.attacks:
        t0 = time.perf_counter()
        poisoned = inject(attack, interactions, targets, cfg, gan_result)
        seconds[f"{attack}/inject"] = round(time.perf_counter() - t0, 1)
        fakes = poisoned.injected
        t0 = time.perf_counter()
        flagged = screen_users(poisoned.interactions, screen).flagged
        stealth = stealth_auc(poisoned.interactions, poisoned.fake_users, targets, screen, seed=cfg.seed)
        seconds[f"{attack}/screen+stealth"] = round(time.perf_counter() - t0, 1)
        weight_stats = None
        arms: dict[str, tuple[Split, torch.Tensor | None, str | None]] = {}
        und = poisoned_split(split, fakes)
        arms["undefended"] = (und, None, None)
        if cfg.robust:
            arms["robust"] = (und, None, "undefended")
        if detector is not None:
            w_und, p_und = suspicion_weights(detector, und)
            weight_stats = _weight_stats(p_und, poisoned.fake_users, real_users)
            arms["gan_ft"] = (und, w_und, "undefended")  # same poisoned pretraining as undefended
        # the screen flagged nobody: the defended arm's data, weights and seeds are those of gan_ft (or of
        # undefended without a detector), so its models would be the same bit for bit; reuse them
        same_as = None if len(flagged) else ("gan_ft" if detector is not None else "undefended")
        if same_as is None:
            dfd = poisoned_split(split, fakes, drop_users=flagged)
            w_dfd = suspicion_weights(detector, dfd)[0] if detector is not None else None
            arms["defended"] = (dfd, w_dfd, None)
        trained: dict[str, tuple] = {}
        rows: dict[str, StagePair] = {}
        for arm, (s, w, reuse) in arms.items():
            t0 = time.perf_counter()
            pre = trained[reuse][0] if reuse else None
            arm_cfg = AdversarialConfig.model_validate({**adv_cfg.model_dump(), **cfg.robust}) if arm == "robust" else adv_cfg
            pre, adv = _train_pipeline(s, pre_cfg, arm_cfg, w, progress, pretrained=pre)
            trained[arm] = (pre, adv)
            hist = _history(s)
            row: dict[str, dict[str, float | None]] = {}
            for stage, model in (("pretrained", pre), ("adversarial", adv)):
                hit = poisoning_metrics(model, targets, hist, users=real_users)
                ndcg = _real_ndcg(model, s, n_real)
                row[stage] = {**hit, "ndcg@10": ndcg,
                              "prediction_shift": prediction_shift(ref[stage], model, targets, clean_hist, hist,
                                                                   users=real_users),
                              "promotion@10": hit["target_hit@10"] - clean[stage]["target_hit@10"],
                              "promotion@50": hit["target_hit@50"] - clean[stage]["target_hit@50"],
                              "ndcg@10_change": ndcg / clean[stage]["ndcg@10"] - 1}
            rows[arm] = StagePair(**row)
            seconds[f"{attack}/{arm}"] = round(time.perf_counter() - t0, 1)
            log.info("poisoning %s/%s: adversarial HR@10 %.4f (clean %.4f), %.1fs", attack, arm,
                     row["adversarial"]["target_hit@10"], clean["adversarial"]["target_hit@10"],
                     seconds[f"{attack}/{arm}"])
        if same_as is not None:
            rows["defended"] = rows[same_as]
            seconds[f"{attack}/defended"] = 0.0
        # defended effect as a share of the undefended one, for each measure of promotion (None: the
        # undefended attack did not move it, e.g. no target reached any real user's top 10)
        ratios: dict[str, dict[str, float | None]] = {}
        for stage in ("pretrained", "adversarial"):
            ratios[stage] = {}
            for key in ("promotion@10", "promotion@50", "prediction_shift"):
                u = getattr(rows["undefended"], stage)[key]
                d = getattr(rows["defended"], stage)[key]
                ratios[stage][key] = d / u if u is not None and d is not None and u > 0 else None
        attacks[attack] = PoisoningAttackResult(
            n_fake=len(poisoned.fake_users), screen=ScreenDetection(**detection_metrics(flagged, poisoned.fake_users)),
            stealth=stealth,
            detector=weight_stats, arms=rows, defended_ratio=ratios)
    seconds["total"] = round(time.perf_counter() - t_start, 1)
    result = PoisoningResult(
        enabled=True, targets=targets, fake_ratio=cfg.fake_ratio, seed=cfg.seed,
        clean=StagePair(pretrained=dict(clean["pretrained"]), adversarial=dict(clean["adversarial"])),
        attacks=attacks, detector=detector.fit if detector is not None else None,
        config={"pretrain.mf_bpr": pre_cfg.model_dump(mode="json"), "adversarial": adv_cfg.model_dump(mode="json"),
                "validation.screen": screen.model_dump(mode="json"), "poisoning": cfg.model_dump(mode="json")})
    return result, seconds


def _weight_stats(p: pd.Series, fake_users, real_users) -> DetectorScores:
    fake = p.index.isin(set(fake_users))
    real = p.index.isin(set(real_users))
    return DetectorScores(p_fake_mean_fakes=float(p[fake].mean()) if fake.any() else None,
                          p_fake_mean_real=float(p[real].mean()), p_fake_max_real=float(p[real].max()),
                          real_above_half=int((p[real] > 0.5).sum()))
