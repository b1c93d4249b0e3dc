"""Exploration (not a benchmark): where the validated_interactions stage spends its time on a data set,
split into its parts (GX expectation suite, poisoning-screen features, the screen, the split), with the
process's peak RSS after each (docs/scale.md).

    .venv/bin/python bench/explore/validation_parts.py artifacts/scale/data/synthetic-1m [gx,screen,split]
"""
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rrec_core import pipeline  # noqa: E402
from rrec_core.config import DataConfig, SplitConfig, ValidationConfig  # noqa: E402
from rrec_core.data.split import split_interactions  # noqa: E402
from rrec_core.poisoning.screen import profile_features  # noqa: E402


def rss() -> str:
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"


path = sys.argv[1]
parts = sys.argv[2].split(",") if len(sys.argv) > 2 else ["gx", "screen", "split"]
t = time.perf_counter()
raw = pipeline.load_raw_data(DataConfig(path=path))
print(f"load {time.perf_counter() - t:.1f}s, {rss()}", flush=True)
v = ValidationConfig()
if "gx" in parts:
    t = time.perf_counter()
    pipeline.validate_raw_data(raw, v)
    print(f"GX suite {time.perf_counter() - t:.1f}s, {rss()}", flush=True)
if "screen" in parts:
    t = time.perf_counter()
    profile_features(raw.dataset.interactions, v.screen)
    print(f"screen features {time.perf_counter() - t:.1f}s, {rss()}", flush=True)
    t = time.perf_counter()
    _, quarantine = pipeline.screen_for_poisoning(raw.dataset.interactions, v)
    n_users = raw.dataset.interactions["user_id"].nunique()
    print(f"screen (features again + detector) {time.perf_counter() - t:.1f}s, flagged {len(quarantine)} of "
          f"{n_users} users, {rss()}", flush=True)
if "split" in parts:
    t = time.perf_counter()
    split_interactions(raw.dataset.interactions, SplitConfig(), None)
    print(f"split {time.perf_counter() - t:.1f}s, {rss()}", flush=True)
