"""The project's one Dagster instance: `rrec run`, every `dvc repro` stage and `make ui` record into
.dagster/ of the project (or $DAGSTER_HOME), so the UI shows every run's materializations, metadata and
check results, whichever of the three launched it."""
from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterInstance

HOME = ".dagster"


def instance_home(root: str | Path = ".") -> Path:
    """$DAGSTER_HOME when set, else <root>/.dagster (created)."""
    home = Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else Path(root).resolve() / HOME
    home.mkdir(parents=True, exist_ok=True)
    return home


def project_instance(root: str | Path = ".") -> DagsterInstance:
    """A persistent instance (SQLite run, event and schedule storage) in instance_home(root)."""
    return DagsterInstance.from_config(str(instance_home(root)))
