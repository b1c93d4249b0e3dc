"""Exploration (not a benchmark): the poisoning screen's parts on one data set, each timed, with the
process's peak RSS after each: loading, the profile matrix, degsim (exact and/or approximate), co_burst,
the whole screen (docs/scale.md).

    .venv/bin/python bench/explore/screen_parts.py /tmp/synthetic-10m [approximate|exact|both]
"""
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import numpy as np  # noqa: E402

from rrec_core import pipeline  # noqa: E402
from rrec_core.config import DataConfig, ScreenConfig  # noqa: E402
from rrec_core.poisoning import screen as S  # noqa: E402


def rss() -> str:
    return f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"


path = sys.argv[1]
modes = {"both": ["exact", "approximate"]}.get(sys.argv[2] if len(sys.argv) > 2 else "approximate",
                                               [sys.argv[2] if len(sys.argv) > 2 else "approximate"])
t = time.perf_counter()
inter = pipeline.load_raw_data(DataConfig(path=path)).dataset.interactions
print(f"load {time.perf_counter() - t:.1f}s, {len(inter):,} rows, {rss()}", flush=True)
t = time.perf_counter()
m = S._matrix(inter)
print(f"matrix {time.perf_counter() - t:.1f}s, {m.shape[0]:,} users x {m.shape[1]:,} items, {rss()}", flush=True)
got = {}
for mode in modes:
    t = time.perf_counter()
    got[mode] = S._degsim(m, ScreenConfig(degsim=mode))
    print(f"degsim {mode} {time.perf_counter() - t:.1f}s, mean {got[mode].mean():.4f}, {rss()}", flush=True)
if len(got) == 2:
    d = got["exact"] - got["approximate"]
    print(f"exact - approximate: max {d.max():.2e} min {d.min():.2e} mean {d.mean():.2e}, "
          f"corr {np.corrcoef(got['exact'], got['approximate'])[0, 1]:.5f}", flush=True)
pop = np.bincount(m.i, minlength=m.shape[1]).astype(np.float64)
t = time.perf_counter()
S._co_burst(m, pop, ScreenConfig())
print(f"co_burst {time.perf_counter() - t:.1f}s, {rss()}", flush=True)
t = time.perf_counter()
r = S.screen_users(inter, ScreenConfig())
print(f"screen_users (features again + detector) {time.perf_counter() - t:.1f}s, flagged {len(r.flagged)} of "
      f"{m.shape[0]:,} users, {rss()}", flush=True)
