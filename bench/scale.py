"""Time and peak memory of every pipeline stage at ML-100K, 1M and 10M interactions, side by side.

Each stage is materialized by the pipeline itself (`rrec run --select <asset>`, the Dagster assets the
UI and `dvc repro` run) in its own process, in a scratch project folder per data set (its own
artifacts/, .dagster/ and params.yaml: the project's params with `data.path` pointing at the data
set), so the peak RSS of that process is the stage's (os.wait4). A stage over `--stage-timeout` is
killed and recorded as such; the stages downstream of it are then not run for that data set.
Synthetic data sets are written by rrec_core.data.synthetic (`rrec data synthetic`) if absent.

    python bench/scale.py                                     # ml-100k, 1M, 10M; every stage
    python bench/scale.py --sizes 1M --stages raw_interactions,validated_interactions
    python bench/scale.py --smoke                             # 20k synthetic, two stages: the script runs

Writes bench/results/scale_<machine>_<date>.md and .json (docs/scale.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a source checkout
from rrec_core.data.synthetic import SyntheticSpec, parse_count, shape_stats, synthesize  # noqa: E402

STAGES = ("raw_interactions", "validated_interactions", "item_text_embeddings", "pretrained_recommender",
          "pretrain_evaluation", "cold_start_evaluation", "distillation", "gan_samples", "adversarial_recommender",
          "robustness_evaluation", "poisoning_evaluation", "text_attack_evaluation", "recommendations")
UPSTREAM = {  # the inputs each stage reads from disk (orchestration/assets.py)
    "validated_interactions": ("raw_interactions",),
    "item_text_embeddings": ("validated_interactions",),
    "pretrained_recommender": ("validated_interactions", "item_text_embeddings"),
    "pretrain_evaluation": ("pretrained_recommender",),
    "recommendations": ("pretrained_recommender", "adversarial_recommender"),
    "cold_start_evaluation": ("validated_interactions", "item_text_embeddings"),
    "distillation": ("pretrained_recommender",),
    "gan_samples": ("validated_interactions",),
    "adversarial_recommender": ("pretrained_recommender", "gan_samples"),
    "robustness_evaluation": ("adversarial_recommender",),
    "poisoning_evaluation": ("raw_interactions", "gan_samples"),
    "text_attack_evaluation": ("adversarial_recommender",),
}


def _machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores"


def dataset(size: str, data_root: Path) -> tuple[str, Path, dict]:
    """(name, folder, shape stats): ml-100k is the project's data; anything else a synthetic set."""
    if size == "ml-100k":
        from rrec_core.config import DataConfig
        from rrec_core.data.loaders import load_dataset

        path = ROOT / "data" / "ml-100k"
        return "ml-100k", path, shape_stats(load_dataset(DataConfig(path=str(path))).interactions)
    n = parse_count(size)
    name = f"synthetic-{size.lower()}"
    path = data_root / name
    meta = path / "synthetic.json"
    if not meta.exists():
        t0 = time.perf_counter()
        synthesize(SyntheticSpec(n, name=name), path)
        print(f"wrote {path} in {time.perf_counter() - t0:.0f}s", flush=True)
    return name, path, json.loads(meta.read_text())["stats"]


def wait_measured(proc: subprocess.Popen, deadline: float, poll: float = 0.5):
    """Wait for `proc` (started with start_new_session=True) until `deadline` (time.perf_counter()), killing its
    process group past it; (status, rusage): "ok", "failed (exit N)" or "timeout > Ns", and the child's resource
    usage from wait4 (ru_maxrss: its peak RSS in KiB)."""
    timeout = deadline - time.perf_counter()
    while True:
        pid, code, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(code)  # reaped by wait4
            return ("ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"), rusage
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, code, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(code)
            return f"timeout > {timeout:.0f}s", rusage
        time.sleep(poll)


def run_stage(work: Path, stage: str, timeout: float) -> dict:
    """`rrec run --select stage` in `work`; {seconds (the step's own), wall, peak_rss_mb, status}."""
    rrec = Path(sys.executable).parent / "rrec"
    env = {**os.environ, "DAGSTER_HOME": str(work / ".dagster"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("RREC_PARAMS", None)
    log = work / f"{stage}.log"
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(rrec), "run", "--params", "params.yaml", "--select", stage], cwd=work, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        status, rusage = wait_measured(proc, t0 + timeout)
    wall = time.perf_counter() - t0
    text = log.read_text()
    m = re.search(rf"stage times \(s\):.*?\b{stage} ([0-9.]+)", text)
    return {"status": status, "seconds": float(m.group(1)) if m else None, "wall": round(wall, 1),
            "peak_rss_mb": round(rusage.ru_maxrss / 1024, 0) if rusage else None,
            "error": None if status == "ok" else text.strip().splitlines()[-3:]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="ml-100k,1M,10M", help="ml-100k and/or synthetic sizes (1M, 10M, 250k)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--stage-timeout", type=float, default=1800.0, help="seconds before a stage is killed")
    ap.add_argument("--work", default=str(ROOT / "artifacts" / "scale"), help="scratch projects and data")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="params override for every data set, e.g. pretrain.mf_bpr.epochs=20")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--label", default="", help="column suffix for this run's settings, e.g. 'screen off'")
    ap.add_argument("--merge", action="store_true", help="keep today's results of the data sets not run now")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.sizes, args.stages = "20k", "raw_interactions,validated_interactions"
    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
    stages = [s for s in STAGES if s in stages]
    work_root = Path(args.work)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    results: dict[str, dict] = {}
    if args.merge:
        prior = _stem_path(Path(args.out), args).with_suffix(".json")
        if prior.exists():
            results.update(json.loads(prior.read_text())["results"])
    for size in args.sizes.split(","):
        name, path, stats = dataset(size, work_root / "data")
        if args.label:
            name = f"{name} ({args.label})"
        work = work_root / name.replace(" ", "_").replace("(", "").replace(")", "")
        work.mkdir(parents=True, exist_ok=True)
        params = json.loads(json.dumps(base))
        params["data"]["path"] = str(path)
        for pair in args.set:
            key, value = pair.split("=", 1)
            node = params
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = yaml.safe_load(value)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        results[name] = {"stats": stats, "stages": {}}
        broken: set[str] = set()
        for stage in stages:
            if broken & set(UPSTREAM.get(stage, ())):
                results[name]["stages"][stage] = {"status": "not run (an input stage did not finish)"}
                broken.add(stage)
                continue
            if stage == "item_text_embeddings":  # measure the encoder, not a cache left by an earlier run
                shutil.rmtree(work / "artifacts" / "cache", ignore_errors=True)
            r = run_stage(work, stage, args.stage_timeout)
            results[name]["stages"][stage] = r
            write(results, stages, Path(args.out), args, quiet=True)  # a killed bench keeps what it measured
            print(f"{name} {stage}: {r['status']} {r['seconds']}s (process {r['wall']}s), peak {r['peak_rss_mb']} MB",
                  flush=True)
            if r["status"] != "ok":
                broken.add(stage)
    write(results, stages, Path(args.out), args)


def _stem_path(out: Path, args) -> Path:
    return out / (f"scale_cpu_{dt.date.today().isoformat()}" + ("_smoke" if args.smoke else ""))


def write(results: dict, stages: list[str], out: Path, args, quiet: bool = False) -> None:
    today = dt.date.today().isoformat()
    names = list(results)
    stages = [s for s in STAGES if any(s in r["stages"] for r in results.values())]  # merged runs too
    lines = [f"# Pipeline stages at scale — {_machine()}, {today}", "",
             "`python bench/scale.py " + " ".join(sys.argv[1:]) + "`: each stage is `rrec run --select <stage>` in "
             "its own process (the step's own seconds; peak RSS of the process, which includes about 400 MB of "
             "Python, torch and Dagster). Project params.yaml" + (f", overrides {args.set}" if args.set else "") + ".",
             "", "| data set | interactions | users | items | user activity mean / sd | item Gini |",
             "|---|---:|---:|---:|---:|---:|"]
    for n in names:
        s = results[n]["stats"]
        lines.append(f"| {n} | {s['interactions']:,} | {s['users']:,} | {s['items']:,} | "
                     f"{s['user_mean']:.0f} / {s['user_sd']:.0f} | {s['item_gini']:.2f} |")
    lines += ["", "| stage | " + " | ".join(f"{n} s | {n} MB" for n in names) + " |",
              "|---|" + "---:|" * (2 * len(names))]
    for stage in stages:
        cells = []
        for n in names:
            r = results[n]["stages"].get(stage, {})
            if r.get("status") == "ok":
                cells += [f"{r['seconds']:.1f}" if r["seconds"] is not None else f"({r['wall']:.0f})",
                          f"{r['peak_rss_mb']:.0f}"]
            else:
                cells += [r.get("status", "-"), f"{r['peak_rss_mb']:.0f}" if r.get("peak_rss_mb") else "-"]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if not quiet:
        print(text)
    out.mkdir(parents=True, exist_ok=True)
    stem = _stem_path(out, args)
    stem.with_suffix(".md").write_text(text)
    stem.with_suffix(".json").write_text(json.dumps({"machine": _machine(), "date": today, "results": results},
                                                 indent=2) + "\n")


if __name__ == "__main__":
    main()
