"""`dvc queue start -j 2`: two queued experiments at once on the finished tiny project.

What was found about "database is locked" (SQLite stores, two writers): every stage of
both experiments starts Prefect's temporary server (PREFECT_API_URL is unset under the
queue's workers), so two uvicorn servers write one `.prefect/prefect.db` at once, and
both experiments' stages write one `mlflow.db`. Neither failed: Prefect opens its SQLite
connections in WAL mode with a 60 s busy timeout, and MLflow (3.x) sets a 20 s busy
timeout on every session; the stores' writes are short, so a writer waits for the other
instead of failing. The test keeps it so: it fails on the message in either
experiment's log. Runs do not mix: each experiment's stages find their MLflow parent by
a hash that includes $DVC_EXP_NAME (tracking.py), and a stage marks Crashed only runs
whose owner process is dead (crashes.py), never the other experiment's.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from tiny import (
    MARKER,
    REPRO_TIMEOUT,
    left_behind,
    mlflow_query,
    prefect_query,
    project_env,
    run,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]

# Both turn off eval.expert_states (so q-expert-off differs from the workspace in that
# alone), and q-one-trial also sets reflexion.trials to 1 (tiny's is 2): evaluation
# params only, so only evaluate@0, evaluate@1 and report run again in each and the two
# overlap in time at the least cost (a method switch re-runs 8
# stages, each starting its own temporary Prefect server; react beside rules_only took
# ~380 s of the suite on one core). Each one's MLflow runs must carry its own trials.
QUEUED = {"q-expert-off": ("reflexion.trials", 2), "q-one-trial": ("reflexion.trials", 1)}


def test_two_queued_experiments_run_concurrently(project):
    """`dvc queue start -j 2`: two experiments (QUEUED) at once, each in its own
    copy under .dvc/tmp/exps, both reporting to the project's Prefect and MLflow stores."""
    proj = project
    started = time.time()
    for name, (param, value) in QUEUED.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"{param}={value}",
             "-S", "eval.expert_states=false"], proj)  # episodes only: what is asked here
    marker = uuid.uuid4().hex
    # The queue's workers are daemons: they must not hold this call's pipes open.
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=proj, check=True,
                   env=project_env(proj, **{MARKER: marker}), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)
    deadline = time.monotonic() + REPRO_TIMEOUT
    while time.monotonic() < deadline:
        if not any(s in run(["dvc", "queue", "status"], proj).stdout
                   for s in ("Queued", "Running")):
            break
        time.sleep(5)
    assert left_behind(marker, grace=60) == []  # the queue's workers end when it is empty
    check_queued(proj, started)


def check_queued(proj: Path, started: float) -> None:
    """Both experiments succeeded, at the same time, each with its own outputs, MLflow
    runs and Prefect runs, and no "database is locked" anywhere in their logs."""
    status = run(["dvc", "queue", "status"], proj).stdout
    logs = {n: run(["dvc", "queue", "logs", n], proj, check=False).stdout for n in QUEUED}
    for name in QUEUED:
        line = next((ln for ln in status.splitlines() if name in ln), "")
        assert "Success" in line, f"{name}: {line!r}\n{status}\n{logs[name][-4000:]}"
        assert "database is locked" not in logs[name], logs[name][-4000:]

    # Outputs: each experiment's params, metrics and trajectories are its own.
    import dvc.api

    rows = {r["Experiment"]: r for r in dvc.api.exp_show(repo=str(proj))
            if r.get("Experiment") in QUEUED}
    assert set(rows) == set(QUEUED), rows.keys()
    for name, (param, value) in QUEUED.items():
        row = rows[name]
        assert float(row[param]) == value, row  # exp_show gives a float column
        metrics = json.loads(dvc.api.read("metrics/iter_1.json", repo=str(proj),
                                          rev=row["rev"]))
        assert metrics["rules_in_pool"] >= 1, metrics
        evals = dvc.api.read("data/iter_1/eval.jsonl", repo=str(proj), rev=row["rev"])
        assert {json.loads(x)["method"] for x in evals.splitlines()} == {"jerp"}

    # MLflow: one parent run per experiment; every stage run under it carries its own
    # experiment's value of the param (a run under the other's parent would not).
    for name, (param, value) in QUEUED.items():
        parents = [r[0] for r in mlflow_query(proj, "select run_uuid from tags where key = "
                                         "'dvc.exp_name' and value = ?", (name,))]
        assert len(parents) == 1, (name, parents)
        children = mlflow_query(proj, "select t.run_uuid, p.value, r.start_time, r.end_time "
                           "from tags t join params p on p.run_uuid = t.run_uuid and "
                           "p.key = ? join runs r on r.run_uuid = t.run_uuid "
                           "where t.key = 'mlflow.parentRunId' and t.value = ?",
                           (param, parents[0]))
        assert children and {float(c[1]) for c in children} == {value}, (name, children)
        rows[name]["span"] = (min(c[2] for c in children), max(c[3] or 0 for c in children))
    (a0, a1), (b0, b1) = (rows[n]["span"] for n in QUEUED)
    assert max(a0, b0) < min(a1, b1), "the two experiments did not run at the same time"

    # Prefect: every flow run of the two experiments completed: none failed on the store,
    # none was marked Crashed by the other experiment's stages.
    states = prefect_query(proj, "select f.name, r.state_type from flow_run r join flow f on "
                    "r.flow_id = f.id where r.created >= ?",
                    (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),))
    assert states and {s for _, s in states} == {"COMPLETED"}, states
