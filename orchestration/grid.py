"""The evaluation grid as Dagster dynamic outputs: one step per cell, run in parallel by the executor.

`poisoning_grid` is a graph-backed asset: `poisoning_grid_cells` yields one DynamicOutput per cell of
params.yaml's `poisoning_grid` (attacks x fake ratios x seeds, plus a clean cell per seed),
`poisoning_grid_cell` is mapped over them (each a separate step: its own process under the multiprocess
executor, its own pod under the Kubernetes executor, deploy/), and `poisoning_grid_summary` collects them
into the artefact (metrics/poisoning_grid.json, reports/poisoning_grid.md). Each step calls one rrec_core
function.

The grid is a study, not a stage of every retraining: it lives in its own group, outside `rrec run`'s
default selection, the retrain job and dvc.yaml's default pipeline. Run it with `rrec grid` (the
`poisoning_grid_job` below, multiprocess executor) or from the UI's asset page.

The cells hand their results to the summary through GridCellIOManager: JSON files, not pickles, kept
per run under artifacts/cache/poisoning_grid/<run id>/ for inspection.
"""

import json
import os
from pathlib import Path

from dagster import (
    AssetSelection,
    ConfigurableIOManager,
    DynamicOut,
    DynamicOutput,
    InputContext,
    OpExecutionContext,
    Out,
    OutputContext,
    define_asset_job,
    graph_asset,
    multiprocess_executor,
    op,
)

from orchestration.resources import RrecConfig
from rrec_core import pipeline
from rrec_core.artifacts import GanSamples, PoisoningGrid, RawData, ValidatedData
from rrec_core.config import load_params
from rrec_core.io import atomic_path
from rrec_core.outputs import ARTIFACTS_DIR

STUDIES = "studies"
CELLS_DIR = f"{ARTIFACTS_DIR}/cache/poisoning_grid"


class GridCellIOManager(ConfigurableIOManager):
    """Op outputs of the grid as JSON files (a cell's key, a cell's result dict)."""

    root: str = CELLS_DIR

    def _path(self, context: OutputContext) -> Path:
        return Path(self.root).joinpath(*context.get_identifier()).with_suffix(".json")

    def handle_output(self, context: OutputContext, obj) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(obj))

    def load_input(self, context: InputContext):
        assert context.upstream_output is not None
        return json.loads(self._path(context.upstream_output).read_text())


@op(out=DynamicOut(str, io_manager_key="grid_io_manager"),
    description="One output per cell of params.yaml poisoning_grid (a clean cell per seed first).")
def poisoning_grid_cells(rrec_config: RrecConfig):
    from rrec_core.evaluation.poisoning_grid import grid_cells

    for cell in grid_cells(rrec_config.resolve().poisoning_grid):
        yield DynamicOutput(cell.key, mapping_key=cell.key)


@op(out=Out(dict, io_manager_key="grid_io_manager"),
    description="One cell: inject the attack, train every arm from scratch, measure on real users.")
def poisoning_grid_cell(context: OpExecutionContext, rrec_config: RrecConfig, raw: RawData,
                        validated: ValidatedData, gan: GanSamples, cell: str) -> dict:
    result = pipeline.evaluate_poisoning_grid_cell(raw, validated, gan, cell, rrec_config.resolve())
    context.add_output_metadata({"seconds": result["seconds"], "n_fake": result["n_fake"],
                                 **{f"{arm}/target_hr@50": round(m["target_hit@50"], 4)
                                    for arm, m in result["arms"].items()}})
    return result


@op(description="Every cell folded into one row per (attack, fake ratio, arm).")
def poisoning_grid_summary(context: OpExecutionContext, rrec_config: RrecConfig, cells: list[dict]) -> PoisoningGrid:
    from dagster import MetadataValue

    grid = pipeline.summarize_poisoning_grid(cells, rrec_config.resolve())
    context.add_output_metadata({"table": MetadataValue.md(grid.markdown()), "cells": len(cells)})
    return grid


@graph_asset(group_name=STUDIES, description="Poisoning attacks x fake ratios x seeds (params.yaml poisoning_grid): "
                                             "target promotion per arm, each cell a parallel step.")
def poisoning_grid(raw_interactions: RawData, validated_interactions: ValidatedData,
                   gan_samples: GanSamples) -> PoisoningGrid:
    results = poisoning_grid_cells().map(
        lambda cell: poisoning_grid_cell(raw_interactions, validated_interactions, gan_samples, cell))
    return poisoning_grid_summary(results.collect())


def grid_workers() -> int:
    """poisoning_grid.workers of params.yaml, read when the definitions load (as the schedule's cron)."""
    return load_params(os.environ.get("RREC_PARAMS", "params.yaml")).poisoning_grid.workers


poisoning_grid_job = define_asset_job(
    "poisoning_grid_job", selection=AssetSelection.assets(poisoning_grid),
    executor_def=multiprocess_executor.configured({"max_concurrent": grid_workers()}),
    description="The poisoning grid, its cells in parallel processes (poisoning_grid.workers at a time).")
