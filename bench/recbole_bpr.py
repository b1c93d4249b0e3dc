"""RecBole 1.2.1's BPR beside rrec's MF-BPR: same data, same protocol, time, peak memory and test metrics.

RecBole lives in its own virtual environment (its pins conflict with the project's); create it once:

    python3.11 -m venv .venv-recbole
    .venv-recbole/bin/pip install torch==2.13.0 recbole==1.2.1 numpy==1.26.4 pandas==2.2.3

(numpy < 2: RecBole 1.2.1's Config aliases np.float_ etc., removed in numpy 2; pandas < 3: RecBole fills missing
values with chained `fillna(inplace=True)`, which pandas 3's copy-on-write turns into a no-op.) Then, from the
repository root, with the project's environment:

    .venv/bin/python bench/recbole_bpr.py                                 # ml-100k and synthetic-1m
    .venv/bin/python bench/recbole_bpr.py --datasets ml-100k
    .venv/bin/python bench/recbole_bpr.py --smoke                         # ml-100k, 2 epochs each

For every data set, each library trains and evaluates in its own process (so the peak RSS that
os.wait4 reports is that library's, data loading included, and each runs with 2 torch threads):

  rrec     `train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)))` with
           params.yaml's pretrain.mf_bpr (dim 64, Adam lr 1e-3, batch 2048, 1 uniform negative that is not a
           training positive, patience 10 on valid NDCG@10), the split of params.yaml (RecBole's RS 8:1:1,
           random order per user, its rounding), test metrics of the best-validation state.
  RecBole  BPR with embedding 64, Adam lr 1e-3, batch 2048, uniform negatives (1 per positive),
           eval_args RS [0.8, 0.1, 0.1] / RO / by user / full ranking, early stopping after 10 epochs
           without a better valid NDCG@10, test metrics of the best-validation state, seed 2020.

RecBole's Trainer saves the best-validation state with torch.save and reloads it with torch.load, which
loads with weights_only=True since torch 2.6 and refuses RecBole's checkpoint (it pickles the Config).
The RecBole worker subclasses the Trainer to keep a deep copy of the best state_dict in memory instead
(`InMemoryBestTrainer`): no pickle is written or read, and `saved=True` keeps its meaning.

Synthetic data sets (synthetic-1m, synthetic-250k, ...) are written to artifacts/synthetic/<name> by
`rrec data synthetic` if absent. Writes bench/results/recbole_bpr_cpu_<date>.md and .json (_smoke with
--smoke), each to a temporary file renamed into place.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECBOLE_PY = ROOT / ".venv-recbole" / "bin" / "python"
VENV_HELP = ("RecBole's environment is missing: create it with\n"
             "    python3.11 -m venv .venv-recbole\n"
             "    .venv-recbole/bin/pip install torch==2.13.0 recbole==1.2.1 numpy==1.26.4 pandas==2.2.3\n"
             "(see the docstring of bench/recbole_bpr.py)")
THREADS = 2
KS = (10,)


# --- workers: one library, one data set, one process -----------------------------------------------

def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_rrec(data: Path, epochs: int | None) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(ROOT))
    from rrec_core.config import EvalConfig, load_params
    from rrec_core.data.loaders import load_dataset
    from rrec_core.data.split import split_interactions
    from rrec_core.evaluation.ranking import evaluate_model
    from rrec_core.training.loop import build_model, train_recommender

    rss_imports = _rss_mb()
    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"data": params.data.model_copy(update={"path": str(data)})})
    cfg = params.pretrain.mf_bpr
    if epochs is not None:
        cfg = cfg.model_copy(update={"epochs": epochs})
    t0 = time.perf_counter()
    ds = load_dataset(params.data, ROOT)
    split = split_interactions(ds.interactions, params.split, ds.items["item_id"].tolist())
    prep = time.perf_counter() - t0
    ev = EvalConfig(ks=KS)
    t0 = time.perf_counter()  # from the model's construction, as for RecBole (Adam's first construction imports torch._dynamo)
    result = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, ev, progress=False)
    train = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = evaluate_model(result.model, split, "test", ev)
    test_s = time.perf_counter() - t0
    hist = result.history
    return {
        "library": "rrec", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "config": cfg.model_dump(mode="json"), "split": params.split.model_dump(mode="json"),
        "users": split.n_users, "items": split.n_items,
        "pairs": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        "prep_seconds": prep, "train_seconds": train, "test_seconds": test_s,
        "epochs": len(hist), "best_epoch": result.best_epoch,
        "epoch_train_seconds": [r["train_seconds"] for r in hist],
        "best_valid": {k: float(v) for k, v in result.best_valid.items() if k != "score"},
        "test": {k: float(v) for k, v in test.items()},
        "rss_after_imports_mb": rss_imports,
    }


def worker_recbole(data: Path, epochs: int | None, valid_metric: str = "NDCG@10") -> dict:
    import copy
    import logging

    import torch

    torch.set_num_threads(THREADS)
    try:
        import recbole
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.general_recommender import BPR
        from recbole.trainer import Trainer
        from recbole.utils import init_seed
    except ImportError as e:
        raise SystemExit(f"cannot import RecBole in {sys.executable}: {e}\n{VENV_HELP}") from None

    class InMemoryBestTrainer(Trainer):
        """RecBole's Trainer with the best-validation state kept in memory, not in a pickle on disk.

        torch >= 2.6 loads with weights_only=True and refuses RecBole's checkpoint (it holds the Config
        object); rather than loading a pickle, keep a deep copy of the state_dict at every update of the
        best validation score and restore it for the test. Also times each epoch's training and validation.
        """

        def __init__(self, config, model):
            super().__init__(config, model)
            self.best_state = None
            self.best_epoch = None
            self.epoch_train_seconds: list[float] = []
            self.epoch_valid_seconds: list[float] = []

        def _save_checkpoint(self, epoch, verbose=True, **kwargs):
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_other = copy.deepcopy(self.model.other_parameter())
            self.best_epoch = epoch

        def _train_epoch(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._train_epoch(*args, **kwargs)
            self.epoch_train_seconds.append(time.perf_counter() - t0)
            return out

        def _valid_epoch(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._valid_epoch(*args, **kwargs)
            self.epoch_valid_seconds.append(time.perf_counter() - t0)
            return out

        @torch.no_grad()
        def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
            if model_file is not None:
                raise ValueError("InMemoryBestTrainer keeps no checkpoint files")
            if load_best_model:
                if self.best_state is None:
                    raise RuntimeError("no best-validation state: fit(saved=True) first")
                self.model.load_state_dict(self.best_state)
                self.model.load_other_parameter(self.best_other)
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    rss_imports = _rss_mb()
    work = Path(tempfile.mkdtemp(prefix="recbole_bpr_"))
    os.chdir(work)  # RecBole writes log_tensorboard/ (and would write log/, saved/) under the working directory
    config_dict = {
        "data_path": str(data.parent), "checkpoint_dir": str(work / "saved"), "gpu_id": "", "use_gpu": False,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
        "embedding_size": 64, "learner": "adam", "learning_rate": 1e-3, "weight_decay": 0.0,
        "train_batch_size": 2048, "eval_batch_size": 4096,
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
        "metrics": ["NDCG", "Recall", "Hit", "MRR"], "topk": list(KS), "valid_metric": valid_metric,
        "metric_decimal_place": 6, "stopping_step": 10, "eval_step": 1, "epochs": epochs or 300,
        "seed": 2020, "reproducibility": True, "show_progress": False, "log_wandb": False,
        "save_dataset": False, "save_dataloaders": False, "worker": 0,
    }
    t0 = time.perf_counter()
    config = Config(model="BPR", dataset=data.name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    logging.getLogger().setLevel(logging.WARNING)  # no init_logger: no log files, no per-epoch INFO lines
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()  # from the model's construction, as for rrec
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = BPR(config, train_data._dataset).to(config["device"])
    trainer = InMemoryBestTrainer(config, model)
    _, best_valid = trainer.fit(train_data, valid_data, verbose=False, saved=True, show_progress=False)
    train = time.perf_counter() - t0
    t0 = time.perf_counter()
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_s = time.perf_counter() - t0
    pairs = {name: d._dataset.inter_num for name, d in
             (("train", train_data), ("valid", valid_data), ("test", test_data))}
    return {
        "library": "recbole", "recbole": recbole.__version__, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "numpy": __import__("numpy").__version__,
        "config": {k: (v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v))
                   for k, v in config_dict.items()},
        "users": dataset.user_num - 1, "items": dataset.item_num - 1,  # RecBole's id 0 is padding
        "pairs": pairs, "prep_seconds": prep, "train_seconds": train, "test_seconds": test_s,
        "epochs": len(trainer.epoch_train_seconds), "best_epoch": trainer.best_epoch + 1,  # 1-based like rrec
        "epoch_train_seconds": trainer.epoch_train_seconds,
        "epoch_valid_seconds": trainer.epoch_valid_seconds,
        "best_valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
        "rss_after_imports_mb": rss_imports,
    }


# --- driver ---------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or platform.machine()


def _dataset_path(name: str) -> Path:
    # synthetic sets outside data/: data.dvc pins that whole folder, and an extra set there makes `dvc status`
    # (and tests/test_dvc_stages.py) report the pipeline's data as modified
    path = ROOT / ("artifacts/synthetic" if name.startswith("synthetic-") else "data") / name
    if name.startswith("synthetic-") and not (path / f"{name}.inter").exists():
        size = name.split("-", 1)[1]
        rrec = Path(sys.executable).parent / "rrec"
        cmd = [str(rrec), "data", "synthetic", "--interactions", size.upper(), "--out", str(path)]
        print("writing", path, ":", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    if not (path / f"{name}.inter").exists():
        raise SystemExit(f"{path / (name + '.inter')}: not found (ml-100k: `rrec data pull`)")
    return path


def run_worker(python: Path, library: str, data: Path, epochs: int | None, timeout: float,
               extra: list[str] = ()) -> dict:
    """One worker process; its result JSON plus wall time and the process's peak RSS (os.wait4)."""
    from scale import wait_measured  # bench/scale.py; here, not at the top: the RecBole worker cannot import it

    with tempfile.TemporaryDirectory(prefix="recbole_bpr_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [str(python), str(Path(__file__).resolve()), "--worker", library, "--data", str(data),
               "--result", str(out)] + (["--epochs", str(epochs)] if epochs else []) + list(extra)
        env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
               "PYTHONHASHSEED": "0", "PYTHONWARNINGS": "ignore"}
        load_start = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        status, rusage = wait_measured(proc, t0 + timeout, poll=0.2)
        wall = time.perf_counter() - t0
        result = json.loads(out.read_text()) if status == "ok" and out.exists() else {"library": library}
    result.update(status=status, wall_seconds=wall, peak_rss_mb=rusage.ru_maxrss / 1024 if rusage else None,
                  load_1min_start_end=[load_start, os.getloadavg()[0]])
    return result


def _row(r: dict) -> str:
    if r["status"] != "ok":
        return f"| {r['library']} | {r['status']} |" + " - |" * 9
    per_epoch = r["train_seconds"] / max(r["epochs"], 1)
    steps = r["epoch_train_seconds"] or [float("nan")]
    median_step = statistics.median(steps)
    t = r["test"]
    return (f"| {r['library']} | {r['train_seconds']:.1f} | {per_epoch:.2f} | {median_step:.2f} ({min(steps):.2f}) | "
            f"{r['epochs']} ({r['best_epoch']}) | {r['prep_seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
            f"{t['ndcg@10']:.4f} | {t['recall@10']:.4f} | {t['hit@10']:.4f} |")


def write(report: dict, out_dir: Path, stem: str) -> str:
    lines = [f"# RecBole's BPR beside rrec's MF-BPR — {report['machine']}, {report['date']}", "",
             f"`{report['command']}` (wall {report['wall_seconds']:.0f} s). Each library in its own process, "
             f"{THREADS} torch threads; torch {report['versions'].get('torch', '?')} in both environments, "
             f"RecBole {report['versions'].get('recbole', '?')} (numpy {report['versions'].get('numpy', '?')} in "
             "its environment). Protocol: RS 8:1:1 per user in random order, full ranking (test masks train "
             "and valid items), dim 64, Adam lr 1e-3, batch 2048, 1 uniform negative per positive, early "
             "stopping after 10 epochs without a better valid NDCG@10"
             + ("" if report["recbole_valid_metric"] == "NDCG@10" else f" (RecBole: {report['recbole_valid_metric']})")
             + ", test metrics of the best-validation state. " + report["note"], "",
             "train s: the training loop with a full-ranking validation after every epoch; s/epoch: that / "
             "epochs; step s: median (fastest) seconds of one epoch's optimisation alone; prep s: loading and splitting; "
             "peak MB: the worker process's peak RSS (os.wait4), about 300-450 MB of it Python and torch.", ""]
    for name, d in report["datasets"].items():
        lines += [f"## {name}", ""]
        shapes = [f"{r['library']}: {r.get('users', '?')} users × {r.get('items', '?')} items, "
                  f"{r.get('pairs', {}).get('train', '?')} / {r.get('pairs', {}).get('valid', '?')} / "
                  f"{r.get('pairs', {}).get('test', '?')} train / valid / test pairs"
                  for r in d["results"]]
        lines += ["; ".join(shapes) + ".", "",
                  "| library | train s | s/epoch | step s (min) | epochs (best) | prep s | peak MB | test NDCG@10 | "
                  "Recall@10 | Hit@10 |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [_row(r) for r in d["results"]]
        if d.get("anchor"):
            lines += ["", d["anchor"]]
        lines.append("")
    text = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    for suffix, body in ((".md", text), (".json", json.dumps(report, indent=2) + "\n")):
        final = out_dir / f"{stem}{suffix}"
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_text(body)
        os.replace(tmp, final)
    return text


def _command(args: list[str]) -> str:
    """The command line, the --note text left out (the report prints it)."""
    kept, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--note":
            kept.append("--note '…'")
            skip = True
        elif a.startswith("--note="):
            kept.append("--note '…'")
        else:
            kept.append(shlex.quote(a))
    return " ".join(["python bench/recbole_bpr.py", *kept])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-100k,synthetic-1m",
                    help="comma-separated: ml-100k and/or synthetic-<size> (artifacts/synthetic/<name>, written if absent)")
    ap.add_argument("--epochs", type=int, default=None, help="cap on the epochs of both (default: 300, early stop)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds before a worker is killed")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. that other jobs shared the machine)")
    ap.add_argument("--recbole-valid-metric", default="NDCG@10",
                    help="RecBole's model-selection metric (rrec selects on NDCG@10; RecBole's default is MRR@10)")
    ap.add_argument("--smoke", action="store_true", help="ml-100k only, 2 epochs each")
    ap.add_argument("--worker", choices=("rrec", "recbole"), help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        if args.worker == "rrec":
            result = worker_rrec(Path(args.data), args.epochs)
        else:
            result = worker_recbole(Path(args.data), args.epochs, args.recbole_valid_metric)
        Path(args.result).write_text(json.dumps(result))
        return

    if not RECBOLE_PY.exists():
        raise SystemExit(f"{RECBOLE_PY}: not found.\n{VENV_HELP}")
    if args.smoke:
        args.datasets, args.epochs = "ml-100k", 2
    names = [n for n in args.datasets.split(",") if n]
    t_all = time.perf_counter()
    today = dt.date.today().isoformat()
    report = {"machine": f"{_cpu_model()}, {os.cpu_count()} cores", "date": today,
              "command": _command(sys.argv[1:] if argv is None else argv),
              "epochs_cap": args.epochs, "recbole_valid_metric": args.recbole_valid_metric, "note": args.note,
              "load_average_start": os.getloadavg(), "versions": {}, "datasets": {}}
    stem = f"recbole_bpr_cpu_{today}" + ("_smoke" if args.smoke else "")
    for name in names:
        data = _dataset_path(name)
        results = []
        for library, python in (("rrec", Path(sys.executable)), ("recbole", RECBOLE_PY)):
            print(f"{name}: {library} ...", flush=True)
            extra = ["--recbole-valid-metric", args.recbole_valid_metric] if library == "recbole" else []
            r = run_worker(python, library, data, args.epochs, args.timeout, extra)
            results.append(r)
            if r["status"] == "ok":
                report["versions"].setdefault("torch", r["torch"])
                if r["torch"] != report["versions"]["torch"]:
                    report["versions"]["torch"] += f" / {r['torch']}"
                if library == "recbole":
                    report["versions"].update(recbole=r["recbole"], numpy=r["numpy"])
                print(f"{name}: {library} {r['train_seconds']:.1f}s train, {r['epochs']} epochs (best "
                      f"{r['best_epoch']}), peak {r['peak_rss_mb']:.0f} MB, test NDCG@10 {r['test']['ndcg@10']:.4f}",
                      flush=True)
            else:
                print(f"{name}: {library} {r['status']}", flush=True)
        anchor = None
        if name == "ml-100k" and not args.epochs:
            rb = next((r for r in results if r["library"] == "recbole" and r["status"] == "ok"), None)
            if rb:
                anchor = (f"RecBole's documented ML-100K BPR (the anchor of docs/results.md): NDCG@10 0.286, "
                          f"Recall@10 0.239, Hit@10 0.772; this run's RecBole: {rb['test']['ndcg@10']:.3f}, "
                          f"{rb['test']['recall@10']:.3f}, {rb['test']['hit@10']:.3f}.")
        report["datasets"][name] = {"path": str(data.relative_to(ROOT)) if data.is_relative_to(ROOT) else str(data),
                                    "results": results, "anchor": anchor}
        report["wall_seconds"] = time.perf_counter() - t_all
        write(report, Path(args.out), stem)  # a killed bench keeps what it measured
    report["wall_seconds"] = time.perf_counter() - t_all
    report["load_average_end"] = os.getloadavg()
    print(write(report, Path(args.out), stem))


if __name__ == "__main__":
    main()
