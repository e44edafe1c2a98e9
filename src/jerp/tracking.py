"""MLflow: one parent run per pipeline configuration, a nested run per stage.

Stages run as separate processes under DVC, so the parent is found again by a
tag holding a hash of params.yaml: every stage of one `dvc repro` lands under
the same parent, and a changed params file starts a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXPERIMENT = "jerp"
PIPELINE_TAG = "jerp.pipeline"


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500]
    return out


def pipeline_id(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _parent(mlflow, params: dict) -> str:
    pid = pipeline_id(params)
    found = mlflow.search_runs(
        experiment_names=[EXPERIMENT],
        filter_string=f"tags.`{PIPELINE_TAG}` = '{pid}'",
        max_results=1, output_format="list",
    )
    if found:
        return found[0].info.run_id
    with mlflow.start_run(run_name=f"pipeline-{pid}", tags={PIPELINE_TAG: pid}) as run:
        mlflow.log_params(_flatten(params))
        return run.info.run_id


@contextmanager
def stage_run(stage: str, iteration: int | None, params: dict) -> Iterator[object]:
    """A nested MLflow run for one stage; yields the mlflow module for logging."""
    import mlflow

    mlflow.set_experiment(EXPERIMENT)
    parent = _parent(mlflow, params)
    name = stage if iteration is None else f"{stage}@{iteration}"
    with mlflow.start_run(run_id=parent):
        with mlflow.start_run(run_name=name, nested=True,
                              tags={"stage": stage, "iteration": str(iteration)}):
            mlflow.log_params(_flatten(params))
            yield mlflow


def log_metrics(mlflow, metrics: dict, step: int | None) -> None:
    flat = {k: float(v) for k, v in _flatten(metrics).items() if _is_number(v)}
    mlflow.log_metrics(flat, step=step)


def log_artifact(mlflow, path: Path) -> None:
    if Path(path).exists():
        mlflow.log_artifact(str(path))


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return v not in ("True", "False")
