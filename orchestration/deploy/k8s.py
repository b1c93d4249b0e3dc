"""rrec's Dagster code location for Kubernetes: every step of a run in its own pod (dagster-k8s).

The same assets, jobs, schedule, sensor and resources as orchestration.definitions; only the executor
differs: `k8s_job_executor` launches each step as a Kubernetes Job, so the poisoning grid's cells (dynamic
outputs, orchestration/grid.py) run side by side on as many nodes as the cluster gives them, and the
pipeline's stages each get a pod sized for them (STEP_RESOURCES, overridable per run in the launchpad).

What the pods share: artifacts/ (the IO managers' files) on a ReadWriteMany volume mounted at the project
root's artifacts/ in every pod (claim `rrec-artifacts`), the run and event storage in the chart's Postgres,
params.yaml baked into the image (or mounted from the ConfigMap `rrec-params` over it), and $RREC_PARAMS
/ HF_HUB_OFFLINE from the ConfigMap `rrec-env`. Image: orchestration/deploy/Dockerfile; chart values:
orchestration/deploy/helm-values.yaml (the official Dagster Helm chart, docs/scale.md).

Checked where no cluster is reachable (tests/test_deploy.py): `dagster definitions validate -m
orchestration.deploy.k8s` loads these definitions, and `validate_run_config` checks each job's executor
config against dagster-k8s's schema (which `definitions validate` does not apply).
"""
from dagster import AssetSelection, Definitions, define_asset_job
from dagster_k8s import k8s_job_executor

from orchestration.assets import ASSETS
from orchestration.automation import data_version_sensor, weekly_retraining
from orchestration.definitions import RESOURCES
from orchestration.grid import poisoning_grid

ARTIFACTS_VOLUME = {"name": "artifacts", "persistentVolumeClaim": {"claimName": "rrec-artifacts"}}
ARTIFACTS_MOUNT = {"name": "artifacts", "mountPath": "/opt/rrec/artifacts"}
# a poisoning-grid cell or a pipeline stage at ML-100K: 2 cores, < 4 GB (bench/results/scale_cpu_*.md: the
# 10M screen peaks at 2.7 GB); larger data sets raise these per run in the launchpad (executor config)
STEP_RESOURCES = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}

STEP_EXECUTOR_CONFIG = {
    "max_concurrent": 16,
    "env_config_maps": ["rrec-env"],
    "volumes": [ARTIFACTS_VOLUME],
    "volume_mounts": [ARTIFACTS_MOUNT],
    "step_k8s_config": {"container_config": {"resources": STEP_RESOURCES}},
}
step_executor = k8s_job_executor.configured(STEP_EXECUTOR_CONFIG)

retrain_job = define_asset_job(
    "retrain", selection=AssetSelection.groups("rrec"),
    description="The whole graph, each stage in its own pod.")
poisoning_grid_job = define_asset_job(
    "poisoning_grid_job", selection=AssetSelection.assets(poisoning_grid),
    description="The poisoning grid, each cell in its own pod (up to max_concurrent at once).")

defs = Definitions(
    assets=[*ASSETS, poisoning_grid],
    jobs=[retrain_job, poisoning_grid_job],
    schedules=[weekly_retraining.with_updated_job(retrain_job)],
    sensors=[data_version_sensor.with_updated_job(retrain_job)],
    executor=step_executor,
    resources=RESOURCES,
)
