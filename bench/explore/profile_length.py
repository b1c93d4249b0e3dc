"""Exploration (one run per cell, not a benchmark): does the fake profiles' length drive promotion?
Gradient attack and bandwagon at fixed profile lengths against MF-BPR retrained from scratch on ML-100K,
one target per seed, real users who had not interacted with the target.

    .venv/bin/python bench/explore/profile_length.py '["real", 20, 300]' '[0.01]' '[1,2,3]' [gradient|bandwagon]

Arguments: JSON list of lengths ("real": drawn from the real users' lengths, the default), JSON fake ratios,
JSON seeds, attack. Prints one JSON line per run.
"""
import json
import sys
import time

import numpy as np
from poisoning_victim import inter, params, victim_metrics

import rrec_core.poisoning.gradient as gradient_mod
from rrec_core.poisoning import ShillingConfig, inject_attack, select_targets
from rrec_core.poisoning.shilling import sample_profile_lengths

lengths = json.loads(sys.argv[1])
ratios = json.loads(sys.argv[2]) if len(sys.argv) > 2 else [0.01]
seeds = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [1, 2, 3]
attack = sys.argv[4] if len(sys.argv) > 4 else "gradient"
for length in lengths:
    if length == "real":
        gradient_mod.sample_profile_lengths = sample_profile_lengths
    else:
        gradient_mod.sample_profile_lengths = lambda real, n, rng, min_length=1, L=int(length): np.full(n, L, dtype=np.int64)
    for ratio in ratios:
        for seed in seeds:
            target = select_targets(inter, 1, seed=seed)
            t0 = time.perf_counter()
            if attack == "gradient":
                p = gradient_mod.gradient_attack(inter, targets=target, cfg=params.poisoning.gradient, fake_ratio=ratio, seed=seed)
                sur = max(t["surrogate_hit@50"] for t in p.config["trace"])
            else:
                over = {} if length == "real" else {"filler_size": int(length) - 1}
                p = inject_attack(inter, ShillingConfig(attack=attack, fake_ratio=ratio, seed=seed, targets=target, **over))
                sur = None
            secs = time.perf_counter() - t0
            m = victim_metrics(p, target)
            fake_len = p.injected.groupby("user_id").size()
            print(json.dumps({"attack": attack, "length": length, "ratio": ratio, "seed": seed, "target": target[0],
                              "fake_len_mean": round(float(fake_len.mean()), 1), "sur": sur,
                              "hr50": round(m["target_hit@50"], 4), "hr10": round(m["target_hit@10"], 4),
                              "pct": round(m["target_percentile"], 3), "s": round(secs, 1)}), flush=True)
