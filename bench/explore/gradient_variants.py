"""Exploration (one run per cell, not a benchmark): gradient-attack settings against MF-BPR retrained from
scratch on ML-100K, with the surrogate's own hit rate beside the victim's.

    .venv/bin/python bench/explore/gradient_variants.py '{"steps100": {"steps": 100}}' '[0.01]' '[1]'

Arguments: JSON {name: GradientAttackConfig overrides}, JSON fake ratios, JSON seeds (one target per seed).
Prints one JSON line per run; the logs of the runs docs/poisoning.md cites are in bench/results/raw/.
"""
import json
import sys
import time

from poisoning_victim import inter, params, victim_metrics

from rrec_core.poisoning import select_targets
from rrec_core.poisoning.gradient import gradient_attack

variants = json.loads(sys.argv[1])
ratios = json.loads(sys.argv[2]) if len(sys.argv) > 2 else [0.01]
seeds = json.loads(sys.argv[3]) if len(sys.argv) > 3 else [1, 2, 3]
for name, over in variants.items():
    for ratio in ratios:
        for seed in seeds:
            target = select_targets(inter, 1, seed=seed)
            t0 = time.perf_counter()
            g = params.poisoning.gradient.model_copy(update=over)
            p = gradient_attack(inter, targets=target, cfg=g, fake_ratio=ratio, seed=seed)
            secs = time.perf_counter() - t0
            tr = p.config["trace"]
            sh = max(t["surrogate_hit@50"] for t in tr)
            m = victim_metrics(p, target)
            print(json.dumps({"v": name, "ratio": ratio, "seed": seed, "sur0": tr[0]["surrogate_hit@50"], "sur": sh, "hr50": round(m["target_hit@50"], 4), "hr10": round(m["target_hit@10"], 4), "pct": round(m["target_percentile"], 3), "s": round(secs, 1)}), flush=True)
