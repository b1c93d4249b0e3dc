"""Poisoning evaluation: inject an attack, retrain from scratch, measure what it did to real users.

For each attack in `cfg.attacks` (heuristic shilling attacks and the GAN), fake users holding the
targets are injected into the data the validation stage sees; their interactions join the training
set (an attacker adds training data; the real users' validation and test rows stay as they are, so
every arm is measured on the same held-out pairs). Then, from scratch:

  clean       no attack: pretrained MF-BPR, then adversarial fine-tuning (the reference)
  undefended  poisoned data, no screen: pretrained, then plain adversarial fine-tuning
  gan_ft      poisoned data, no screen; fine-tuning weights users by 1 - P(fake) from the detector
              fitted on the gan_samples asset's profiles (the ablation: what the GAN adds alone)
  defended    poisoned data, the validation stage's screen (flagged users' training rows dropped,
              real or fake), then fine-tuning with the GAN weights (the whole defence)

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

from rrec_core.config import AdversarialConfig, EvalConfig, PoisoningEvalConfig, ScreenConfig, TrainConfig
from rrec_core.data.split import Split
from rrec_core.poisoning.detector import FakeDetector, suspicion_weights
from rrec_core.poisoning.metrics import _history_frame as _history  # a Split's training pairs as a frame
from rrec_core.poisoning.metrics import detection_metrics, poisoning_metrics, prediction_shift

log = logging.getLogger(__name__)
ARMS = ("clean", "undefended", "gan_ft", "defended")


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


def _train_pipeline(split: Split, pre_cfg: TrainConfig, adv_cfg: AdversarialConfig, weights: torch.Tensor | None,
                    progress: bool, pretrained=None):
    from rrec_core.adversarial import adversarial_finetune
    from rrec_core.train import build_model, train_recommender

    ev = EvalConfig(ks=(10,))
    if pretrained is None:
        pretrained = build_model("mf_bpr", split, pre_cfg)
        pretrained = train_recommender(pretrained, split, pre_cfg, ev, progress=progress).model
    adversarial = adversarial_finetune(pretrained, split, adv_cfg, ev, progress=progress, user_weights=weights).model
    return pretrained, adversarial


def _real_ndcg(model, split: Split, n_real: int) -> float:
    from rrec_core.train import evaluate_model

    real = replace(split, test=split.test[split.test[:, 0] < n_real], valid=split.valid[split.valid[:, 0] < n_real])
    return evaluate_model(model, real, "test", EvalConfig(ks=(10,)))["ndcg@10"]


def inject(name: str, interactions: pd.DataFrame, targets: list[str], cfg: PoisoningEvalConfig, gan_result=None):
    """One attack on `interactions` (PoisonedData): a heuristic shilling attack or the GAN."""
    from rrec_core.poisoning.gan import gan_attack
    from rrec_core.poisoning.shilling import inject_attack

    if name == "gan":
        if gan_result is None:
            raise ValueError("the gan attack needs the trained generator (gan_samples)")
        return gan_attack(interactions, targets=targets, result=gan_result, fake_ratio=cfg.fake_ratio, seed=cfg.seed)
    return inject_attack(interactions, attack=name, targets=targets, fake_ratio=cfg.fake_ratio, seed=cfg.seed)


def evaluate_poisoning(interactions: pd.DataFrame, split: Split, cfg: PoisoningEvalConfig, screen: ScreenConfig,
                       pre_cfg: TrainConfig, adv_cfg: AdversarialConfig, detector: FakeDetector | None,
                       gan_result=None, progress: bool = False) -> dict:
    """Run every attack and arm (module docstring); returns the JSON-ready result.

    interactions: the validated real interactions (what the validation stage screens); split: their
    train/valid/test split (the pipeline's); detector: fitted on GAN samples (None skips gan_ft and
    defends with the screen alone)."""
    from rrec_core.poisoning.screen import screen_users
    from rrec_core.poisoning.shilling import select_targets

    t_start = time.perf_counter()
    real = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    targets = [str(t) for t in (cfg.targets or select_targets(real, cfg.n_targets, seed=cfg.seed))]
    n_real = split.n_users
    real_users = [str(u) for u in split.user_ids]
    t0 = time.perf_counter()
    clean_pre, clean_adv = _train_pipeline(split, pre_cfg, adv_cfg, None, progress)
    clean_hist = _history(split)
    ref = {"pretrained": clean_pre, "adversarial": clean_adv}
    out: dict = {"targets": targets, "fake_ratio": cfg.fake_ratio, "seed": cfg.seed, "attacks": {},
                 "arms": {"clean": {}}, "detector": detector.fit if detector is not None else None}
    for stage, model in ref.items():
        out["arms"]["clean"][stage] = {**poisoning_metrics(model, targets, clean_hist, users=real_users),
                                       "ndcg@10": _real_ndcg(model, split, n_real)}
    out["arms"]["clean"]["seconds"] = round(time.perf_counter() - t0, 1)

    for attack in cfg.attacks:
        poisoned = inject(attack, interactions, targets, cfg, gan_result)
        fakes = poisoned.injected
        res: dict = {"n_fake": len(poisoned.fake_users)}
        flagged = screen_users(poisoned.interactions, screen).flagged
        res["screen"] = detection_metrics(flagged, poisoned.fake_users)
        arms: dict[str, tuple[Split, torch.Tensor | None, object]] = {}
        und = poisoned_split(split, fakes)
        arms["undefended"] = (und, None, None)
        if detector is not None:
            w_und, p_und = suspicion_weights(detector, und)
            res["detector"] = _weight_stats(p_und, poisoned.fake_users, real_users)
            arms["gan_ft"] = (und, w_und, "undefended")  # same poisoned pretraining as undefended
        dfd = poisoned_split(split, fakes, drop_users=flagged)
        w_dfd = suspicion_weights(detector, dfd)[0] if detector is not None else None
        arms["defended"] = (dfd, w_dfd, None)
        trained: dict[str, tuple] = {}
        for arm, (s, w, reuse) in arms.items():
            t0 = time.perf_counter()
            pre = trained[reuse][0] if reuse else None
            pre, adv = _train_pipeline(s, pre_cfg, adv_cfg, w, progress, pretrained=pre)
            trained[arm] = (pre, adv)
            hist = _history(s)
            row = {}
            for stage, model in (("pretrained", pre), ("adversarial", adv)):
                m = poisoning_metrics(model, targets, hist, users=real_users)
                m["ndcg@10"] = _real_ndcg(model, s, n_real)
                m["prediction_shift"] = prediction_shift(ref[stage], model, targets, clean_hist, hist, users=real_users)
                m["promotion@10"] = m["target_hit@10"] - out["arms"]["clean"][stage]["target_hit@10"]
                m["promotion@50"] = m["target_hit@50"] - out["arms"]["clean"][stage]["target_hit@50"]
                m["ndcg@10_change"] = m["ndcg@10"] / out["arms"]["clean"][stage]["ndcg@10"] - 1
                row[stage] = m
            row["seconds"] = round(time.perf_counter() - t0, 1)
            res[arm] = row
            log.info("poisoning %s/%s: adversarial HR@10 %.4f (clean %.4f), %.1fs", attack, arm,
                     row["adversarial"]["target_hit@10"], out["arms"]["clean"]["adversarial"]["target_hit@10"],
                     row["seconds"])
        # defended effect as a share of the undefended one, for each measure of promotion (None: the
        # undefended attack did not move it, e.g. no target reached any real user's top 10)
        for stage in ("pretrained", "adversarial"):
            ratios = {}
            for key in ("promotion@10", "promotion@50", "prediction_shift"):
                u, d = res["undefended"][stage][key], res["defended"][stage][key]
                ratios[key] = d / u if u > 0 else None
            res[f"defended_ratio_{stage}"] = ratios
        out["attacks"][attack] = res
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    return out


def _weight_stats(p: pd.Series, fake_users, real_users) -> dict:
    fake = p.index.isin(set(fake_users))
    real = p.index.isin(set(real_users))
    return {"p_fake_mean_fakes": float(p[fake].mean()) if fake.any() else None,
            "p_fake_mean_real": float(p[real].mean()), "p_fake_max_real": float(p[real].max()),
            "real_above_0.5": int((p[real] > 0.5).sum())}


def poisoning_frame(result: dict) -> pd.DataFrame:
    """Long table: attack, arm, stage and the metrics (clean rows under attack "none")."""
    rows = []
    if not result.get("attacks"):
        return pd.DataFrame(columns=["attack", "arm", "stage", "target_hit@10"])
    for stage, m in result["arms"]["clean"].items():
        if isinstance(m, dict):
            rows.append({"attack": "none", "arm": "clean", "stage": stage, **m})
    for attack, res in result["attacks"].items():
        for arm in ARMS[1:]:
            if arm in res:
                for stage in ("pretrained", "adversarial"):
                    rows.append({"attack": attack, "arm": arm, "stage": stage, **res[arm][stage]})
    return pd.DataFrame(rows)


def plot_poisoning(result: dict, path) -> None:
    """Prediction shift (target percentile change from the clean model) per attack and arm, pretrained
    and adversarial side by side, with target HR@50 over each bar: on ML-100K the targets rise through
    most of the ranking without reaching the top 10, so HR@10 alone would draw nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rrec_core.io import atomic_path

    attacks = list(result.get("attacks", {}))
    if not attacks:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "poisoning evaluation disabled (params.yaml: poisoning.enabled)", ha="center", va="center")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        plt.close(fig)
        return
    arms = [a for a in ARMS[1:] if any(a in result["attacks"][k] for k in attacks)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    width = 0.8 / max(len(arms), 1)
    for ax, stage in zip(axes, ("pretrained", "adversarial")):
        for j, arm in enumerate(arms):
            cells = [result["attacks"][a].get(arm, {}).get(stage, {}) for a in attacks]
            x = np.arange(len(attacks)) + (j - (len(arms) - 1) / 2) * width
            ax.bar(x, [c.get("prediction_shift", np.nan) for c in cells], width, label=arm)
            for xi, c in zip(x, cells):
                if c:
                    ax.text(xi, max(c["prediction_shift"], 0) + 0.005, f"{c['target_hit@50']:.3f}", ha="center",
                            fontsize=7, rotation=90)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(attacks)), attacks)
        ax.set_title(f"{stage} MF-BPR (labels: target HR@50)")
        ax.set_ylabel("prediction shift (target percentile)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Poisoning: {100 * result['fake_ratio']:.0f}% fake users, {len(result['targets'])} targets")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def poisoning_markdown(result: dict, image: str | None = "poisoning.png") -> str:
    """The poisoning section of the robustness report."""
    c = result["arms"]["clean"]
    lines = ["## Data poisoning", "",
             f"{100 * result['fake_ratio']:.0f}% fake users pushing {len(result['targets'])} unpopular targets "
             f"({', '.join(result['targets'])}); MF-BPR retrained from scratch per arm, then adversarially "
             "fine-tuned; real users only. Promotion = target HR@10 minus the clean model's.", "",
             f"Clean reference: pretrained HR@10 {c['pretrained']['target_hit@10']:.4f}, NDCG@10 "
             f"{c['pretrained']['ndcg@10']:.4f}; adversarial HR@10 {c['adversarial']['target_hit@10']:.4f}, "
             f"NDCG@10 {c['adversarial']['ndcg@10']:.4f}.", "",
             "| attack | screen recall / precision | arm | model | HR@10 | HR@50 | exposure@50 | promotion@10 "
             "| shift | NDCG@10 change |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for attack, res in result["attacks"].items():
        sc = res["screen"]
        for arm in ARMS[1:]:
            if arm not in res:
                continue
            for stage in ("pretrained", "adversarial"):
                m = res[arm][stage]
                lines.append(f"| {attack} | {sc['recall']:.2f} / {sc['precision']:.2f} | {arm} | {stage} | "
                             f"{m['target_hit@10']:.4f} | {m['target_hit@50']:.4f} | {m['target_exposure@50']:.4f} | "
                             f"{m['promotion@10']:+.4f} | {m['prediction_shift']:+.4f} | {100 * m['ndcg@10_change']:+.2f}% |")
    lines += ["", "Defended effect as a share of the undefended effect (goal ≤ 20%; n/a: the undefended attack "
              "did not move that measure):", "",
              "| attack | model | HR@10 promotion | HR@50 promotion | prediction shift |", "|---|---|---:|---:|---:|"]
    fmt = lambda r: "n/a" if r is None else f"{100 * r:.1f}%"  # noqa: E731
    for attack, res in result["attacks"].items():
        for stage in ("pretrained", "adversarial"):
            r = res[f"defended_ratio_{stage}"]
            lines.append(f"| {attack} | {stage} | {fmt(r['promotion@10'])} | {fmt(r['promotion@50'])} | "
                         f"{fmt(r['prediction_shift'])} |")
    for attack, res in result["attacks"].items():
        if "gan_ft" in res:
            u, g = res["undefended"]["adversarial"], res["gan_ft"]["adversarial"]
            lines.append("")
            lines.append(f"Ablation, {attack}: GAN-weighted fine-tuning alone (no screen) moves the adversarial model's "
                         f"prediction shift {u['prediction_shift']:+.4f} → {g['prediction_shift']:+.4f}, HR@50 "
                         f"{u['target_hit@50']:.4f} → {g['target_hit@50']:.4f}, NDCG@10 {u['ndcg@10']:.4f} → "
                         f"{g['ndcg@10']:.4f}.")
    if result.get("detector"):
        d = result["detector"]
        lines += ["", f"GAN-trained detector (fine-tuning weights 1 − P(fake)): fitted on {d['fakes']} GAN profiles "
                  f"among {d['users']} users, training accuracy {d['train_accuracy']:.3f}."]
    if image:
        lines += ["", f"![poisoning]({image})"]
    return "\n".join(lines) + "\n"
