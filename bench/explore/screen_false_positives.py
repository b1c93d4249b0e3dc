"""Who the screen quarantines when an injection arrives: fakes, or real users the injection aimed at.

For each seed (its own one-item target, drawn as the poisoning grid draws them), attack and fake ratio: inject
into params.yaml's ML-100K, run the validation stage's screen (params.yaml validation.screen) and count the
fakes and the real users it flags, the detected groups, and for the real users flagged the share that sits in
the screen's candidate pools. The clean data's screen is the reference (it flags nobody on ML-100K).

    .venv/bin/python bench/explore/screen_false_positives.py [--seeds 1,2,3] [--attacks gradient,bandwagon]
        [--organic-holders 0] [--targets 5] [--explain]

The gradient attack takes ~17 s per injection on 2 cores; the heuristic ones well under a second. The promotion
GAN needs artifacts/gan_samples (`make repro` or `dvc repro gan_samples`); without it it is skipped.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from rrec_core.config import load_params  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.evaluation.poisoning import inject  # noqa: E402
from rrec_core.poisoning.screen import SCORE_FEATURES, robust_z, screen_users  # noqa: E402
from rrec_core.poisoning.shilling import select_targets  # noqa: E402


def pool_members(features, cfg) -> set[str]:
    """Users in either candidate pool of the screen (the anomaly pool, the co_burst pool)."""
    z = robust_z(features[[c for c in SCORE_FEATURES if c in features]])
    anomaly = np.sqrt((z ** 2).mean(axis=1))
    n = max(1, int(math.ceil(cfg.pool_fraction * len(features))))
    return set(anomaly.nlargest(n).index.astype(str)) | set(features["co_burst"].nlargest(n).index.astype(str))


def explain(r, clean, fakes: set[str], pools: set[str]) -> None:
    """Why a group of real items was detected: its items' pool tests under attack and on the clean data, and
    who holds them."""
    items = set(r.target_items)
    cols = ["pool", "item_id", "held_in_pool", "expected", "popularity", "p_value", "candidate", "organic_group"]
    print("  under attack:\n" + r.item_tests[r.item_tests.item_id.astype(str).isin(items)][cols].to_string(index=False))
    print("  clean data:\n" + clean.item_tests[clean.item_tests.item_id.astype(str).isin(items)][cols].to_string(index=False))
    f = r.features
    for name, users in (("fakes", fakes), ("pool members", pools - fakes)):
        share = f.loc[f.index.astype(str).isin(users), "target_share"]
        print(f"  {name}: {len(share)}, mean share of the detected items held {share.mean():.2f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--attacks", default="gradient,bandwagon,random,average,segment,gan_promotion")
    ap.add_argument("--ratios", default="0.01,0.03")
    ap.add_argument("--targets", type=int, default=None, help="targets per injection (default: poisoning_grid.n_targets)")
    ap.add_argument("--organic-holders", type=int, default=None,
                    help="override validation.screen.organic_holders (0: the screen before the organic-group check)")
    ap.add_argument("--explain", action="store_true", help="print the detected items' pool tests when real users are flagged")
    args = ap.parse_args(argv)
    params = load_params(ROOT / "params.yaml")
    ds = load_dataset(params.data, ROOT)
    real = ds.interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    screen = params.validation.screen
    if args.organic_holders is not None:
        screen = screen.model_copy(update={"organic_holders": args.organic_holders})
    grid = params.poisoning_grid
    gan = None
    if "gan_promotion" in args.attacks and (ROOT / "artifacts" / "gan_samples").is_dir():
        from rrec_core.artifacts import GanSamples
        gan = GanSamples.load(ROOT / "artifacts" / "gan_samples").result
    clean = screen_users(ds.interactions, screen)
    print(f"clean data: {len(clean.flagged)} flagged, groups {clean.target_items}", flush=True)
    print("| seed | target | attack | ratio | fakes | fakes flagged | real flagged | of them in a pool | detected items | s |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---|---:|")
    for seed in (int(s) for s in args.seeds.split(",")):
        targets = [str(t) for t in select_targets(real, args.targets or grid.n_targets, quantiles=grid.target_quantiles,
                                                  min_count=grid.target_min_count, seed=seed)]
        for attack in args.attacks.split(","):
            if attack == "gan_promotion" and gan is None:
                print(f"skipped {attack}: no artifacts/gan_samples", flush=True)
                continue
            for ratio in (float(r) for r in args.ratios.split(",")):
                t0 = time.perf_counter()
                cfg = params.poisoning.model_copy(update={"fake_ratio": ratio, "seed": seed})
                p = inject(attack, ds.interactions, targets, cfg, gan)
                r = screen_users(p.interactions, screen)
                fakes = set(map(str, p.fake_users))
                flagged = set(r.flagged)
                real_flagged = flagged - fakes
                pools = pool_members(r.features, screen)
                print(f"| {seed} | {' '.join(targets)} | {attack} | {ratio:.0%} | {len(fakes)} | {len(flagged & fakes)} "
                      f"| {len(real_flagged)} | {len(real_flagged & pools)} | {' '.join(r.target_items[:8])} |"
                      f" {time.perf_counter() - t0:.0f}s", flush=True)
                if args.explain and real_flagged:
                    explain(r, clean, fakes, pools)


if __name__ == "__main__":
    main()
