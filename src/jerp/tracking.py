"""MLflow: one parent run per pipeline execution, a nested run per stage.

Stages run as separate processes under DVC, so the parent is found again by a
tag: a hash of params.yaml, the git commit and the DVC experiment name
($DVC_EXP_NAME under `dvc exp run`). Every stage of one `dvc repro` (or one
experiment) lands under the same open parent; the report stage closes it
(FINISHED), so the next execution starts a new parent, and an execution that
failed half-way (no report yet) is resumed under its still-open parent.

The parent is what a person opens: it carries the per-iteration metrics with
the iteration as the step (evaluate logs them as it goes, the report fills in
the rest), so its chart view shows the learning curves; the report and the
rule snapshots are its artifacts. The experiment is tagged as model
development (`mlflow.experimentKind`), so MLflow 3 opens it in the
model-training view rather than the GenAI one.

A stage killed with -9 cannot end its run, which would stay RUNNING forever:
each stage run is tagged with its owner process (as Prefect's flow runs are,
jerp.crashes), and the next stage to start ends the runs of dead owners KILLED.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jerp.config import flatten

EXPERIMENT = "jerp"
PIPELINE_TAG = "jerp.pipeline"
DVC_EXP_TAG = "dvc.exp_name"
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows it
PARENT_TAG = "mlflow.parentRunId"  # what nests a run under another in the UI
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # (genai_development opens the GenAI view)
OWNER_TAG = "jerp.owner"  # the stage process that owns a run (crashes.owner_tag)


def _flatten(d: dict) -> dict[str, str]:
    """Dotted keys, stringified leaves cut to MLflow's 500-character param limit."""
    return {k: str(v)[:500] for k, v in flatten(d).items()}


def numeric(metrics: dict) -> dict[str, float]:
    """The numeric leaves of a (nested) metrics dict, keys dotted; booleans and None dropped."""
    return {k: float(v) for k, v in _flatten(metrics).items() if _is_number(v)}


def git_commit(root: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or Path.cwd(),
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def pipeline_id(params: dict, commit: str | None = None, exp_name: str | None = None) -> str:
    blob = json.dumps([params, commit, exp_name], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _experiment_id(client) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT)
    if exp is None or exp.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
    return exp_id


def _open_parent(client, exp_id: str, params: dict) -> str:
    """The open parent run of this execution, created (RUNNING) by its first stage."""
    from mlflow.entities import Param

    commit, exp_name = git_commit(), os.environ.get("DVC_EXP_NAME") or None
    pid = pipeline_id(params, commit, exp_name)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{PIPELINE_TAG}` = '{pid}' and attributes.status = "
        "'RUNNING'", max_results=1)
    if found:
        return found[0].info.run_id
    tags = {PIPELINE_TAG: pid}
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    if exp_name:
        tags[DVC_EXP_TAG] = exp_name
    run = client.create_run(exp_id, run_name=exp_name or f"pipeline-{pid}", tags=tags)
    flat = list(_flatten(params).items())
    for k in range(0, len(flat), 100):  # log_batch takes at most 100 params a call
        client.log_batch(run.info.run_id, params=[Param(a, b) for a, b in flat[k:k + 100]])
    return run.info.run_id


@contextmanager
def stage_run(stage: str, iteration: int | None, params: dict) -> Iterator[object]:
    """A run for one stage nested under the execution's parent; yields the mlflow module.

    The stage's run ends FINISHED, or FAILED if the stage raises; the parent stays open."""
    import mlflow

    from jerp import crashes

    client = mlflow.MlflowClient()
    exp_id = _experiment_id(client)
    owner = crashes.this_process()
    end_orphans(client, exp_id, owner.host)
    parent = _open_parent(client, exp_id, params)
    name = stage if iteration is None else f"{stage}@{iteration}"
    child = client.create_run(exp_id, run_name=name, tags={
        PARENT_TAG: parent, "stage": stage, "iteration": str(iteration),
        OWNER_TAG: crashes.owner_tag(owner)})
    with mlflow.start_run(run_id=child.info.run_id):
        mlflow.log_params(_flatten(params))
        yield mlflow


def end_orphans(client, exp_id: str, host: str) -> list[str]:
    """End KILLED the RUNNING stage runs whose owner process on this host is gone (a
    stage killed with -9); runs of live processes (a queued experiment beside this
    one) and of other hosts are left alone. Housekeeping: never fails the stage."""
    import sys

    from jerp import crashes

    try:
        runs = client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=1000)
        owned = ((r.info.run_id, [r.data.tags.get(OWNER_TAG, "")]) for r in runs)
        dead = crashes.orphaned_runs(owned, host, crashes.process_alive)
        for run_id in dead:
            client.set_terminated(run_id, status="KILLED")
        return dead
    except Exception as e:
        print(f"warning: could not end killed MLflow runs: {type(e).__name__}: {e}",
              file=sys.stderr)
        return []


def parent_run_id(mlflow) -> str:
    """The pipeline's parent run, seen from inside `stage_run`."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("parent_run_id: call it inside tracking.stage_run")
    return mlflow.get_run(run.info.run_id).data.tags[PARENT_TAG]


def log_metrics(mlflow, metrics: dict, step: int | None, on_parent: bool = False) -> None:
    """Numeric metrics on the stage's run; `on_parent`: on the pipeline's parent run too, so
    its chart view draws them against `step` (the iteration)."""
    flat = numeric(metrics)
    mlflow.log_metrics(flat, step=step)
    if on_parent:
        log_curves(mlflow, {step or 0: flat})


def log_curves(mlflow, per_step: dict[int, dict]) -> int:
    """Per-iteration metrics on the parent run (step = iteration), skipping (key, step) pairs
    it already holds so a re-run stage draws no duplicate points; returns how many logged."""
    import time

    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    parent = parent_run_id(mlflow)
    have: dict[str, set[int]] = {}
    for key in client.get_run(parent).data.metrics:
        have[key] = {m.step for m in client.get_metric_history(parent, key)}
    now = int(time.time() * 1000)
    new = [Metric(k, v, now, step) for step, metrics in sorted(per_step.items())
           for k, v in numeric(metrics).items() if step not in have.get(k, set())]
    for k in range(0, len(new), 1000):
        client.log_batch(parent, metrics=new[k:k + 1000])
    return len(new)


def close_parent(mlflow, artifacts: dict[str, list[Path]]) -> str:
    """Log artifacts on the parent ({folder: files}; missing files skipped), end it FINISHED."""
    client = mlflow.MlflowClient()
    parent = parent_run_id(mlflow)
    for folder, files in artifacts.items():
        for f in files:
            if Path(f).is_file():
                client.log_artifact(parent, str(f), artifact_path=folder or None)
    client.set_terminated(parent, "FINISHED")
    return parent


def log_artifact(mlflow, path: Path) -> None:
    if Path(path).exists():
        mlflow.log_artifact(str(path))


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return v not in ("True", "False", "nan")
