"""`rrec`: data pull, validate, config, run (the Dagster assets in-process), evaluate a saved model.

The CLI drives Dagster, so it lives in orchestration/, not in the library (rrec_core never imports dagster)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2  # bad data or config (1: a run that failed for another reason)
BAD_INPUT_ERRORS = ("ConfigError", "DataFormatError", "DataValidationError", "FileNotFoundError", "UnknownUserError")


def _cmd_data_pull(args) -> int:
    from rrec_core.data.fetch import DataPullError, pull_data

    try:
        got = pull_data(args.root, tuple(args.sources.split(",")), force=args.force)
    except DataPullError as e:
        print(f"rrec data pull: {e}", file=sys.stderr)
        return 1
    print(f"data at {got['path']} ({got['md5']}) from {got['source']}")
    return 0


def _cmd_data_synthetic(args) -> int:
    from rrec_core.data.synthetic import SyntheticSpec, parse_count, synthesize

    try:
        spec = SyntheticSpec(parse_count(args.interactions), n_users=args.users and parse_count(args.users),
                             n_items=args.items and parse_count(args.items), seed=args.seed,
                             name=args.name or Path(args.out).name)
        got = synthesize(spec, args.out)
    except ValueError as e:
        print(f"rrec data synthetic: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    s = got["stats"]
    print(f"{got['path']}: {s['interactions']:,} interactions, {s['users']:,} users, {s['items']:,} items "
          f"(user activity mean {s['user_mean']:.0f} sd {s['user_sd']:.0f}; item Gini {s['item_gini']:.2f}); "
          f"read it with --set data.path={got['path']} (format atomic)")
    return 0


def parse_overrides(pairs: list[str] | None) -> dict:
    """["adversarial.eps=0.3", "pretrain.models=[mf_bpr]"] -> {"adversarial.eps": 0.3, ...} (values are YAML)."""
    import yaml

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"rrec: --set expects key=value (e.g. adversarial.eps=0.3), got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _nest(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _cmd_run(args) -> int:
    """Materialize the assets with Dagster's in-process executor (same code as the UI and dvc repro), recorded
    in the project's Dagster instance; the console shows one line per finished stage, the log file the rest."""
    from orchestration.instance import instance_home, project_instance
    from rrec_core.config import resolve_config

    overrides = parse_overrides(args.set)
    params_file = args.params or "params.yaml"
    resolve_config(_params(args), overrides)  # a bad key or value fails here, before any work
    t0 = time.perf_counter()
    # library progress bars (model loading and saving) are chatter between the stage lines
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # the LM stack is optional for an MF-only run
        pass
    instance = project_instance()
    log_file, log_handler = _log_to_file(instance_home() / "logs")
    try:
        return _run_and_report(args, instance, log_file, params_file, overrides, t0)
    finally:
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()


def _run_and_report(args, instance, log_file: Path, params_file: str, overrides: dict, t0: float) -> int:
    from dagster import AssetSelection, materialize

    from orchestration.definitions import defs
    from rrec_core.outputs import ARTIFACTS_DIR, PUBLISHED, REPORT

    before = {r.run_id for r in instance.get_runs(limit=5)}
    # the console logger shows only warnings and failures; every step event is in the instance (the UI) and
    # the log file. Overrides go through Dagster's config system, exactly as a launchpad run's would
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
                  "resources": {"rrec_config": {"config": {"params_path": params_file, **_nest(overrides)}}}}
    progress = _StageProgress(instance, before)
    progress.start()
    try:
        # the default run is the pipeline (group rrec); studies such as the poisoning grid run by name or `rrec grid`
        result = materialize(list(defs.assets or []), resources=defs.resources, instance=instance,  # type: ignore[arg-type]
                             selection=args.select or AssetSelection.groups("rrec"), raise_on_error=False,
                             run_config=run_config)
    finally:
        progress.stop()
    timings = _step_seconds(instance, result.run_id)
    _write_event_log(instance, result.run_id, log_file)
    if not result.success:
        bad_input = False
        for ev in result.all_events:
            error = getattr(ev.event_specific_data, "error", None)
            if ev.is_failure and error is not None:
                cause = error.cause if error.cls_name == "DagsterExecutionStepExecutionError" and error.cause else error
                bad_input |= cause.cls_name in BAD_INPUT_ERRORS
                print(f"step {ev.step_key} failed: {cause.message.strip()}", file=sys.stderr)
        print(f"log: {log_file}", file=sys.stderr)
        return EXIT_BAD_INPUT if bad_input else 1
    print(f"\npipeline finished in {time.perf_counter() - t0:.1f}s (run {result.run_id[:8]}, in the UI: make ui)")
    print("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    # summarize what this run materialized (a file left by an earlier run or version is not this run's)
    done = {ev.asset_key.to_user_string() for ev in result.get_asset_materialization_events() if ev.asset_key}
    pretrain = Path(PUBLISHED["pretrain_evaluation"][0].path)
    if "pretrain_evaluation" in done:
        from rrec_core.reporting.training import metrics_markdown
        from rrec_core.results import PretrainResult

        print(f"\n{metrics_markdown(PretrainResult.from_json(pretrain.read_text()))}\n")
    robustness = Path(PUBLISHED["robustness_evaluation"][0].path)
    if "robustness_evaluation" in done:
        from rrec_core.reporting.robustness import headline
        from rrec_core.results import RobustnessResult

        print(headline(RobustnessResult.from_json(robustness.read_text())).to_markdown(floatfmt=".4f") + "\n")
    metrics = sorted(d.path for asset, ds in PUBLISHED.items() if asset in done for d in ds if d.kind == "metrics")
    print(f"artefacts: {Path(ARTIFACTS_DIR).resolve()}/")
    print(f"metrics:   {', '.join(metrics)}")
    if Path(REPORT).exists():
        print(f"report:    {Path(REPORT).resolve()}")
    print(f"log:       {log_file}")
    return 0


class _StageProgress:
    """Prints "done <stage> (12.3 s)" as each step of the new run finishes (polls the instance's event log:
    materialize() blocks, and Dagster's console logger at INFO prints a dozen lines per step)."""

    def __init__(self, instance, before: set[str], every: float = 1.0) -> None:
        import threading

        self.instance, self.before, self.every = instance, before, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.printed: set[str] = set()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self._poll()  # the last steps

    def _poll(self) -> None:
        runs = [r for r in self.instance.get_runs(limit=5) if r.run_id not in self.before]
        if not runs:
            return
        for step, seconds in _step_seconds(self.instance, runs[0].run_id).items():
            if step not in self.printed:
                self.printed.add(step)
                print(f"  done {step} ({seconds:.1f} s)", flush=True)

    def _loop(self) -> None:
        while not self.done.wait(self.every):
            try:
                self._poll()
            except Exception:  # a progress line is never worth failing the run for  # noqa: BLE001
                pass


def _log_to_file(folder: Path) -> tuple[Path, logging.Handler]:
    """Send every log record (libraries included) to a new file under `folder`; its path and handler."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"rrec-run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.log"
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.captureWarnings(True)
    return path, handler


def _write_event_log(instance, run_id: str, path: Path) -> None:
    """Append the run's Dagster events (step starts, inputs, outputs, metadata, failures) to the log file."""
    with path.open("a") as f:
        for entry in instance.all_logs(run_id):
            f.write(f"{time.strftime('%H:%M:%S', time.gmtime(entry.timestamp))} dagster {entry.step_key or '-'}: "
                    f"{entry.user_message or entry.message}\n")


def _cmd_grid(args) -> int:
    """Run the poisoning grid (params.yaml poisoning_grid): one Dagster step per cell, `workers` of them at a time
    in their own processes (the multiprocess executor), recorded in the project's instance like `rrec run`."""
    from dagster import execute_job, reconstructable

    from orchestration.instance import project_instance
    from rrec_core.config import ConfigError, resolve_config
    from rrec_core.evaluation.poisoning_grid import grid_cells

    overrides = parse_overrides(args.set)
    if any(k == "poisoning_grid.workers" or k.startswith("poisoning_grid.workers.") for k in overrides):
        raise ConfigError("poisoning_grid.workers sets the job's executor when the definitions load: set it in the "
                          "params file, not with --set")
    params_file = args.params or os.environ.get("RREC_PARAMS", "params.yaml")
    cfg = resolve_config(_params(args), overrides)
    os.environ["RREC_PARAMS"] = params_file  # the job's executor (workers) and every step's process read this file
    from orchestration.definitions import poisoning_grid_job_def

    grid = cfg.poisoning_grid
    print(f"poisoning grid: {len(grid_cells(grid))} cells ({len(grid.seeds)} clean, "
          f"{len(grid.attacks)} attacks x {len(grid.fake_ratios)} fake ratios x {len(grid.seeds)} seeds), "
          f"arms {', '.join(grid.arms)}; {grid.workers} at a time", flush=True)
    t0 = time.perf_counter()
    instance = project_instance()
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}},
                  "resources": {"rrec_config": {"config": {"params_path": params_file, **_nest(overrides)}}}}
    result = execute_job(reconstructable(poisoning_grid_job_def), instance=instance, run_config=run_config,
                         raise_on_error=False)
    if not result.success:
        for ev in result.all_events:
            error = getattr(ev.event_specific_data, "error", None)
            if ev.is_failure and error is not None:
                print(f"step {ev.step_key} failed: {(error.cause or error).message.strip()}", file=sys.stderr)
        return 1
    from rrec_core.outputs import PUBLISHED

    report, metrics = (Path(PUBLISHED["poisoning_grid"][i].path) for i in (1, 0))
    print(report.read_text())
    print(f"grid finished in {time.perf_counter() - t0:.1f}s (run {result.run_id[:8]}); metrics: {metrics}; "
          f"report: {report.resolve()}")
    return 0


def _cmd_config(args) -> int:
    """The resolved configuration with each field's description (what a run would use)."""
    from pydantic import BaseModel

    from rrec_core.config import resolve_config

    cfg = resolve_config(_params(args), parse_overrides(args.set))

    def show(model: BaseModel, prefix: str = "") -> None:
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel):
                print(f"{prefix}{name}:  # {info.description or ''}")
                show(value, prefix + "  ")
            else:
                doc = " ".join((info.description or "").split())
                print(f"{prefix}{name}: {json.dumps(value if not isinstance(value, tuple) else list(value))}  # {doc}")

    show(cfg)
    return 0


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    start, out = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None:
            continue
        if ev.event_type_value == "STEP_START":
            start[ev.step_key] = entry.timestamp
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and ev.step_key in start:
            out[ev.step_key] = entry.timestamp - start[ev.step_key]
    return out


def _params(args):
    """The params file the command names (it must exist), or params.yaml / the defaults."""
    from rrec_core.config import load_params

    return load_params(args.params or "params.yaml", must_exist=args.params is not None)


def _cmd_validate(args) -> int:
    from rrec_core.pipeline import load_raw_data, sanitize_item_text, validate_raw_data

    params = _params(args)
    raw = load_raw_data(params.data)
    report = validate_raw_data(raw, params.validation)
    print(report.markdown())
    items = raw.dataset.items
    if items is not None and params.validation.sanitize_text:
        _, changes = sanitize_item_text(items)
        for c in changes.itertuples():  # not failures: the validation stage cleans these and lists them
            print(f"warning: {items.attrs.get('source')}: row {c.row}, column {c.column}: {c.kinds} "
                  f"({c.before!r} -> {c.after!r}; validation.sanitize_text cleans it)", file=sys.stderr)
    for f in report.failures:
        print(f.describe(), file=sys.stderr)
    return 0 if report.success else 2


def _cmd_evaluate(args) -> int:
    from rrec_core.artifacts import ValidatedData
    from rrec_core.evaluation.ranking import evaluate_model
    from rrec_core.models import load_recommender
    from rrec_core.outputs import ARTIFACTS_DIR

    params = _params(args)
    model = load_recommender(args.model_dir)
    data = ValidatedData.load(Path(args.data or Path(ARTIFACTS_DIR) / "validated_interactions"))
    if model.user_ids != data.split.user_ids or model.item_ids != data.split.item_ids:
        print(f"{args.model_dir}: model ids do not match the split in {args.data}", file=sys.stderr)
        return 1
    metrics = evaluate_model(model, data.split, args.part, params.evaluation)
    print(json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=2))
    return 0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of the record (a redirected or captured stream included)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_to_console() -> None:
    """rrec's own INFO lines and every library's errors on the console; library chatter (GX, transformers,
    Dagster) only in the run's log file (`rrec run`)."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if any(getattr(h, "rrec_console", False) for h in root.handlers):
        return
    console = _StderrHandler()
    console.rrec_console = True  # type: ignore[attr-defined]
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    console.addFilter(lambda r: r.levelno >= logging.ERROR or r.name.split(".")[0] in ("rrec_core", "orchestration"))
    root.addHandler(console)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _cmd_recommend(args) -> int:
    """Top-k new items for the given users from a trained model in artifacts/."""
    from rrec_core.artifacts import TrainedModels, ValidatedData
    from rrec_core.outputs import ARTIFACTS_DIR
    from rrec_core.recommend import UnknownUserError, recommend

    params = _params(args)
    name = args.model or params.recommendations.model
    stage, _, model_name = name.partition("/")
    art = Path(args.artifacts or ARTIFACTS_DIR)
    folder = art / {"pretrained": "pretrained_recommender", "adversarial": "adversarial_recommender"}.get(stage, stage)
    if not (folder / "models.json").exists():
        raise FileNotFoundError(f"{folder}: no trained models (run `make run`, or `rrec run --select "
                                f"'{folder.name}'`); --model is <pretrained|adversarial>/<mf_bpr|text_hybrid>")
    models = TrainedModels.load(folder).models
    if model_name not in models:
        raise FileNotFoundError(f"{folder}: no model {model_name!r} (trained: {sorted(models)})")
    data = ValidatedData.load(art / "validated_interactions")
    try:
        top = recommend(models[model_name], data.split, data.items, args.user_ids, k=args.k or params.recommendations.k,
                        quarantine=data.quarantine)
    except UnknownUserError as e:
        print(f"rrec recommend: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"{name}, top {args.k or params.recommendations.k}, everything each user interacted with masked\n")
    print(top.to_markdown(index=False, floatfmt=".3f"))
    return 0


def main(argv: list[str] | None = None) -> int:
    _log_to_console()
    p = argparse.ArgumentParser(prog="rrec", description=__doc__)
    p.add_argument("--debug", action="store_true", help="show the Python traceback of a bad-input error")
    sub = p.add_subparsers(dest="cmd", required=True)
    data = sub.add_parser("data", help="raw data management").add_subparsers(dest="data_cmd", required=True)
    pull = data.add_parser("pull", help="restore data/ to the version pinned in data.dvc")
    pull.add_argument("--root", default=".")
    pull.add_argument("--sources", default="dvc,grouplens,recbole", help="comma-separated, tried in order")
    pull.add_argument("--force", action="store_true", help="fetch even if data/ already matches")
    pull.set_defaults(fn=_cmd_data_pull)
    syn = data.add_parser("synthetic", help="write synthetic interactions with the shape of real data (docs/scale.md)")
    syn.add_argument("--interactions", required=True, help="how many, e.g. 1M, 10M, 250k")
    syn.add_argument("--out", required=True, help="dataset folder, e.g. artifacts/synthetic/synthetic-1m (not under data/, which data.dvc pins)")
    syn.add_argument("--users", default=None, help="default: interactions / 140")
    syn.add_argument("--items", default=None, help="default: 1682 * sqrt(interactions / 100K)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--name", default=None, help="file stem (default: the folder name)")
    syn.set_defaults(fn=_cmd_data_synthetic)
    run = sub.add_parser("run", help="run the whole pipeline in-process through Dagster")
    run.add_argument("--params", default=None, help="params file (default params.yaml)")
    run.add_argument("--select", default=None, help="Dagster asset selection, e.g. 'pretrained_recommender*'")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a params.yaml value for this run, e.g. adversarial.eps=0.3 (repeatable)")
    run.set_defaults(fn=_cmd_run)
    grid = sub.add_parser("grid", help="run the poisoning grid (attacks x fake ratios x seeds), cells in parallel")
    grid.add_argument("--params", default=None, help="params file (default params.yaml); poisoning_grid.workers from it")
    grid.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="override, as for rrec run, e.g. poisoning_grid.seeds=[1,2] (not workers)")
    grid.set_defaults(fn=_cmd_grid)
    conf = sub.add_parser("config", help="print the resolved configuration with each field's description")
    conf.add_argument("--params", default=None, help="params file (default params.yaml)")
    conf.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, as for rrec run")
    conf.set_defaults(fn=_cmd_config)
    val = sub.add_parser("validate", help="run the expectation suite on the raw data (exit 2 on bad data)")
    val.add_argument("--params", default=None, help="params file (default params.yaml)")
    val.set_defaults(fn=_cmd_validate)
    ev = sub.add_parser("evaluate", help="full-ranking metrics of a saved model directory")
    ev.add_argument("model_dir")
    ev.add_argument("--data", default=None, help="validated_interactions artefact (default artifacts/...)")
    ev.add_argument("--part", choices=["valid", "test"], default="test")
    ev.add_argument("--params", default=None, help="params file (default params.yaml)")
    ev.set_defaults(fn=_cmd_evaluate)
    rec = sub.add_parser("recommend", help="top-k new items for users of a trained model")
    rec.add_argument("user_ids", nargs="+", metavar="USER_ID", help="raw user ids of the data set")
    rec.add_argument("-k", type=_positive_int, default=None, help="items per user (default recommendations.k)")
    rec.add_argument("--model", default=None,
                     help="<pretrained|adversarial>/<mf_bpr|text_hybrid> (default recommendations.model)")
    rec.add_argument("--artifacts", default=None, help="artefact directory (default artifacts/)")
    rec.add_argument("--params", default=None, help="params file (default params.yaml)")
    rec.set_defaults(fn=_cmd_recommend)
    args = p.parse_args(argv)
    from rrec_core.config import ConfigError
    from rrec_core.data.loaders import DataFormatError
    from rrec_core.validation import DataValidationError

    try:
        return args.fn(args)
    except (ConfigError, DataFormatError, DataValidationError, FileNotFoundError) as e:
        # bad input, not a bug: one message that names the file, row and column; the traceback on --debug
        if args.debug:
            raise
        print(f"rrec {args.cmd}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
