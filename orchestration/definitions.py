"""Dagster entry point: `dagster dev -m orchestration.definitions` (make ui)."""
from dagster import Definitions, in_process_executor

from orchestration.assets import ASSETS
from orchestration.automation import data_version_sensor, retrain_job, weekly_retraining
from orchestration.grid import GridCellIOManager, poisoning_grid, poisoning_grid_job
from orchestration.io_manager import ArtifactIOManager
from orchestration.resources import RrecConfig

# shared with the Kubernetes code location (orchestration/deploy/k8s.py)
RESOURCES = {"io_manager": ArtifactIOManager(), "grid_io_manager": GridCellIOManager(), "rrec_config": RrecConfig()}

defs = Definitions(
    assets=[*ASSETS, poisoning_grid],
    jobs=[retrain_job, poisoning_grid_job],
    schedules=[weekly_retraining],
    sensors=[data_version_sensor],
    # one process avoids re-importing torch/GX per step on small machines (the graph is mostly a chain); the
    # poisoning grid's job runs its independent cells with the multiprocess executor (orchestration/grid.py)
    executor=in_process_executor,
    resources=RESOURCES,
)


def poisoning_grid_job_def():
    """The resolved poisoning_grid_job, for `reconstructable` (the multiprocess executor re-imports it in each
    step's process): `rrec grid`, tests."""
    return defs.resolve_job_def("poisoning_grid_job")
