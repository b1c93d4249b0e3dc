"""When the pipeline runs: a weekly retraining schedule and a sensor on the data version."""
from pathlib import Path

import yaml
from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleDefinition,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    sensor,
)

from orchestration.resources import schedule_config

retrain_job = define_asset_job(
    "retrain", selection=AssetSelection.groups("rrec"),
    description="The whole graph: raw data -> validation -> text embeddings -> pretraining -> GAN samples -> "
                "adversarial fine-tuning -> poisoning and robustness evaluation.")

# a schedule's cron is part of the definitions, so it is read when the code location loads (the only
# setting that is; every run reads its config when it starts)
_sched = schedule_config()
weekly_retraining = ScheduleDefinition(
    name="weekly_retraining", job=retrain_job, cron_schedule=_sched.cron, execution_timezone=_sched.timezone,
    default_status=DefaultScheduleStatus.STOPPED,
    description=f"Retrain everything on schedule.cron in params.yaml ({_sched.cron} {_sched.timezone}).")

DATA_DVC = Path("data.dvc")


def data_version(dvc_file: Path = DATA_DVC) -> str | None:
    """The content hash data.dvc pins (changes whenever `dvc add data` records new data)."""
    if not dvc_file.exists():
        return None
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    return outs[0].get("md5")


@sensor(job=retrain_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.STOPPED,
        description="Starts a retraining run when the data version pinned in data.dvc changes.")
def data_version_sensor(context: SensorEvaluationContext):
    version = data_version()
    if version is None:
        return SkipReason(f"{DATA_DVC} not found")
    if version == context.cursor:
        return SkipReason(f"data version unchanged ({version})")
    context.update_cursor(version)
    return RunRequest(run_key=f"data-{version}", tags={"rrec/data_version": version})
