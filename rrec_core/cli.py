"""`rrec`: data pull, validate, run (the whole Dagster chain in-process), evaluate a saved model."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def _cmd_data_pull(args) -> int:
    from rrec_core.data.fetch import DataPullError, pull_data

    try:
        got = pull_data(args.root, tuple(args.sources.split(",")), force=args.force)
    except DataPullError as e:
        print(f"rrec data pull: {e}", file=sys.stderr)
        return 1
    print(f"data at {got['path']} ({got['md5']}) from {got['source']}")
    return 0


def _cmd_run(args) -> int:
    """Materialize every asset with Dagster's in-process executor (same code as the UI and dvc repro)."""
    import os

    if args.params:
        os.environ["RREC_PARAMS"] = args.params
    from dagster import DagsterInstance, materialize

    from orchestration.definitions import defs
    from rrec_core.config import load_params

    params = load_params(args.params or "params.yaml")
    t0 = time.perf_counter()
    instance = DagsterInstance.ephemeral()
    # INFO keeps the step log readable (Dagster's DEBUG prints every input/output event)
    result = materialize(list(defs.assets), resources=defs.resources, instance=instance,
                         selection=args.select or None, raise_on_error=False,
                         run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}})
    timings = _step_seconds(instance, result.run_id)
    if not result.success:
        for ev in result.all_events:
            if ev.is_failure and ev.event_specific_data is not None and getattr(ev.event_specific_data, "error", None):
                print(f"step {ev.step_key} failed: {ev.event_specific_data.error.message.strip()}", file=sys.stderr)
        return 1
    metrics_file = Path(params.metrics_dir) / "pretrain.json"
    print(f"\npipeline finished in {time.perf_counter() - t0:.1f}s")
    print("stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    if metrics_file.exists():
        from rrec_core.pipeline import metrics_markdown

        print(f"\n{metrics_markdown(json.loads(metrics_file.read_text()))}\n")
    robustness = Path(params.metrics_dir) / "robustness.json"
    if robustness.exists():
        from rrec_core.robustness import headline

        print(headline(json.loads(robustness.read_text())).to_markdown(floatfmt=".4f") + "\n")
    print(f"artefacts: {Path(params.artifacts_dir).resolve()}/")
    print(f"metrics:   {Path(params.metrics_dir).resolve()}/ (pretrain.json, robustness.json, gan.json, poisoning.json)")
    if Path("reports/robustness.md").exists():
        print(f"report:    {Path('reports/robustness.md').resolve()}")
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


def _cmd_validate(args) -> int:
    from rrec_core.config import load_params
    from rrec_core.pipeline import load_raw_data, validate_raw_data

    params = load_params(args.params)
    report = validate_raw_data(load_raw_data(params.data), params.validation)
    print(report.markdown())
    for f in report.failures:
        print(f.describe(), file=sys.stderr)
    return 0 if report.success else 1


def _cmd_evaluate(args) -> int:
    from rrec_core.artifacts import ValidatedData
    from rrec_core.config import load_params
    from rrec_core.models import load_recommender
    from rrec_core.train import evaluate_model

    params = load_params(args.params)
    model = load_recommender(args.model_dir)
    data = ValidatedData.load(Path(args.data or Path(params.artifacts_dir) / "validated_interactions"))
    if model.user_ids != data.split.user_ids or model.item_ids != data.split.item_ids:
        print(f"{args.model_dir}: model ids do not match the split in {args.data}", file=sys.stderr)
        return 1
    metrics = evaluate_model(model, data.split, args.part, params.evaluation)
    print(json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="rrec", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    data = sub.add_parser("data", help="raw data management").add_subparsers(dest="data_cmd", required=True)
    pull = data.add_parser("pull", help="restore data/ to the version pinned in data.dvc")
    pull.add_argument("--root", default=".")
    pull.add_argument("--sources", default="dvc,grouplens,recbole", help="comma-separated, tried in order")
    pull.add_argument("--force", action="store_true", help="fetch even if data/ already matches")
    pull.set_defaults(fn=_cmd_data_pull)
    run = sub.add_parser("run", help="run the whole pipeline in-process through Dagster")
    run.add_argument("--params", default=None, help="params file (default params.yaml)")
    run.add_argument("--select", default=None, help="Dagster asset selection, e.g. 'pretrained_recommender*'")
    run.set_defaults(fn=_cmd_run)
    val = sub.add_parser("validate", help="run the expectation suite on the raw data")
    val.add_argument("--params", default="params.yaml")
    val.set_defaults(fn=_cmd_validate)
    ev = sub.add_parser("evaluate", help="full-ranking metrics of a saved model directory")
    ev.add_argument("model_dir")
    ev.add_argument("--data", default=None, help="validated_interactions artefact (default artifacts/...)")
    ev.add_argument("--part", choices=["valid", "test"], default="test")
    ev.add_argument("--params", default="params.yaml")
    ev.set_defaults(fn=_cmd_evaluate)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
