"""Exploration (one run per cell, not a benchmark): promotion-GAN settings against MF-BPR retrained from
scratch on ML-100K, with the attack's stealth AUC; uses the generator of the gan_samples stage
(artifacts/gan_samples/generator, `make repro` first). The name "plain" runs the untuned GAN.

    .venv/bin/python bench/explore/promotion_gan_variants.py '{"plain": {}, "default": {}}' '[0.03]' '[1, 2, 3]'

Arguments: JSON {name: PromotionGanConfig overrides}, JSON fake ratios, JSON seeds (one target per seed).
Prints one JSON line per run; the logs of the runs docs/poisoning.md cites are in bench/results/raw/.
"""
import json
import sys
import time

from poisoning_victim import ROOT, inter, params, victim_metrics

from rrec_core.poisoning import gan_attack, load_generator, select_targets
from rrec_core.poisoning.promotion_gan import promotion_gan_attack
from rrec_core.poisoning.stealth import stealth_auc

gan = load_generator(ROOT / "artifacts/gan_samples/generator")
variants = json.loads(sys.argv[1])
ratios = json.loads(sys.argv[2]) if len(sys.argv) > 2 else [0.03]
seeds = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [1]
g = params.poisoning.gradient.model_dump()
for name, over in variants.items():
    for ratio in ratios:
        for seed in seeds:
            target = select_targets(inter, 1, seed=seed)
            t0 = time.perf_counter()
            if name == "plain":
                p = gan_attack(inter, targets=target, result=gan, fake_ratio=ratio, seed=seed); tr = [{}]
            else:
                p = promotion_gan_attack(inter, gan, targets=target, fake_ratio=ratio, seed=seed, **{**{k: v for k, v in g.items() if k not in ("steps", "lr", "fake_ratio", "seed", "n_targets")}, **over})
                tr = p.config["trace"]
            secs = time.perf_counter() - t0
            st = stealth_auc(p.interactions, p.fake_users, target, params.validation.screen, seed=seed)
            m = victim_metrics(p, target)
            print(json.dumps({"v": name, "ratio": ratio, "seed": seed, "sur0": tr[0].get("surrogate_hit@50"), "sur": max((t.get("surrogate_hit@50", 0) for t in tr)), "short": tr[-1].get("critic_shortfall_sd"), "hr50": round(m["target_hit@50"], 4), "hr10": round(m["target_hit@10"], 4), "pct": round(m["target_percentile"], 3), "stealth": round(st["stealth_auc"], 3), "s": round(secs, 1)}), flush=True)
