"""Dagster entry point: `dagster dev -m orchestration.definitions` (make ui)."""
from dagster import Definitions, in_process_executor

from orchestration.assets import ASSETS
from orchestration.automation import data_version_sensor, retrain_job, weekly_retraining
from orchestration.io_manager import ArtifactIOManager
from orchestration.resources import RrecConfig

defs = Definitions(
    assets=ASSETS,
    jobs=[retrain_job],
    schedules=[weekly_retraining],
    sensors=[data_version_sensor],
    # one process avoids re-importing torch/GX per step on small machines (the graph is mostly a chain)
    executor=in_process_executor,
    resources={"io_manager": ArtifactIOManager(), "rrec_config": RrecConfig()},
)
