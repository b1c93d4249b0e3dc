"""`rrec`: data pull, validate, config, run (the Dagster assets in-process), evaluate a saved model.

The CLI drives Dagster, so it lives in orchestration/, not in the library (rrec_core never imports dagster)."""
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
    """Materialize the assets with Dagster's in-process executor (same code as the UI and dvc repro)."""
    from dagster import DagsterInstance, materialize

    from orchestration.definitions import defs
    from rrec_core.config import load_params, resolve_config
    from rrec_core.outputs import ARTIFACTS_DIR, PUBLISHED, REPORT

    overrides = parse_overrides(args.set)
    params_file = args.params or "params.yaml"
    resolve_config(load_params(params_file), overrides)  # a bad key or value fails here, before any work
    t0 = time.perf_counter()
    instance = DagsterInstance.ephemeral()
    # INFO keeps the step log readable (Dagster's DEBUG prints every input/output event)
    # overrides go through Dagster's config system, exactly as a launchpad run's would
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}},
                  "resources": {"rrec_config": {"config": {"params_path": params_file, **_nest(overrides)}}}}
    result = materialize(list(defs.assets or []), resources=defs.resources, instance=instance,  # type: ignore[arg-type]
                         selection=args.select or None, raise_on_error=False, run_config=run_config)
    timings = _step_seconds(instance, result.run_id)
    if not result.success:
        for ev in result.all_events:
            error = getattr(ev.event_specific_data, "error", None)
            if ev.is_failure and error is not None:
                print(f"step {ev.step_key} failed: {error.message.strip()}", file=sys.stderr)
        return 1
    print(f"\npipeline finished in {time.perf_counter() - t0:.1f}s")
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
    metrics = sorted(d.path for ds in PUBLISHED.values() for d in ds if d.kind == "metrics")
    print(f"artefacts: {Path(ARTIFACTS_DIR).resolve()}/")
    print(f"metrics:   {', '.join(metrics)}")
    if Path(REPORT).exists():
        print(f"report:    {Path(REPORT).resolve()}")
    return 0


def _cmd_config(args) -> int:
    """The resolved configuration with each field's description (what a run would use)."""
    from pydantic import BaseModel

    from rrec_core.config import load_params, resolve_config

    cfg = resolve_config(load_params(args.params), parse_overrides(args.set))

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
    from rrec_core.evaluation.ranking import evaluate_model
    from rrec_core.models import load_recommender
    from rrec_core.outputs import ARTIFACTS_DIR

    params = load_params(args.params)
    model = load_recommender(args.model_dir)
    data = ValidatedData.load(Path(args.data or Path(ARTIFACTS_DIR) / "validated_interactions"))
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
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a params.yaml value for this run, e.g. adversarial.eps=0.3 (repeatable)")
    run.set_defaults(fn=_cmd_run)
    conf = sub.add_parser("config", help="print the resolved configuration with each field's description")
    conf.add_argument("--params", default="params.yaml")
    conf.add_argument("--set", action="append", metavar="KEY=VALUE", help="override, as for rrec run")
    conf.set_defaults(fn=_cmd_config)
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
