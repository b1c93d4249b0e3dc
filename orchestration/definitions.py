"""Dagster entry point: `dagster dev -m orchestration.definitions` (make ui)."""
from dagster import Definitions

from orchestration.assets import ASSETS
from orchestration.automation import data_version_sensor, retrain_job, weekly_retraining
from orchestration.io_manager import ArtifactIOManager
from orchestration.config import project_params

defs = Definitions(
    assets=ASSETS,
    jobs=[retrain_job],
    schedules=[weekly_retraining],
    sensors=[data_version_sensor],
    resources={"io_manager": ArtifactIOManager(root=project_params().artifacts_dir)},
)
