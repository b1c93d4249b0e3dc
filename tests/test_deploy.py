"""The Kubernetes deployment configuration (orchestration/deploy/): its code location loads and validates,
every job runs its steps as Kubernetes Jobs with the shared artifacts volume, and the chart values, the image
and the code location name the same module. No cluster is reachable here: this is what can be checked."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "orchestration" / "deploy"


@pytest.mark.parametrize("module", ["orchestration.definitions", "orchestration.deploy.k8s"])
def test_the_code_locations_validate(module):
    """What the UI and the cluster load: a name clash of a graph and a job, two Definitions at module scope
    or an executor config off its schema fail here."""
    r = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m", module],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Validation successful" in r.stdout + r.stderr


def test_every_job_steps_in_pods_that_share_the_artifacts_volume():
    from orchestration.definitions import defs as local
    from orchestration.deploy.k8s import defs

    assert {a.key for a in defs.assets} == {a.key for a in local.assets}  # type: ignore[union-attr]
    from dagster import validate_run_config

    for name in ("retrain", "poisoning_grid_job"):
        job = defs.resolve_job_def(name)
        assert job.executor_def.name == "k8s", name
        # the executor's own config against dagster-k8s's schema (`definitions validate` does not apply it)
        assert validate_run_config(job, {}), name
    from orchestration.deploy.k8s import STEP_EXECUTOR_CONFIG

    assert STEP_EXECUTOR_CONFIG["volume_mounts"] == [{"name": "artifacts", "mountPath": "/opt/rrec/artifacts"}]
    assert defs.resolve_schedule_def("weekly_retraining").job_name == "retrain"


def test_chart_values_and_image_name_the_code_location():
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "orchestration.deploy.k8s"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    mount = deployment["volumeMounts"][0]
    assert mount["mountPath"] == "/opt/rrec/artifacts" and "WORKDIR /opt/rrec" in (DEPLOY / "Dockerfile").read_text()
    assert '"-m", "orchestration.deploy.k8s"' in (DEPLOY / "Dockerfile").read_text()
