"""kill -9 in every stage kind of a real `dvc repro`, and the recovery after each.

The finished tiny project (conftest.pristine) is copied and two params change, so that
each target stage runs again: `rollout.temperature` (rollout@1, then finetune@1 and
evaluate@1 on its new rollouts) and the reflector, now the LLM one on a stand-in
endpoint (stage_project.Endpoint: reflect@1, revise@1 on its proposals, evaluate@0).
`python -m jerp.prefect_server -- dvc repro` (what `make run` does) is started, the test watches
for a target stage to be in the middle of its flow run, kills the whole process group
with -9, checks that no process of the run is left (the Prefect server `jerp.prefect_server`
started included: every process of the run carries a marker in its environment, and
/proc is scanned for it) and that no output of another stage changed, then starts it
again, up to the next target; a last run completes the pipeline. Each kill is placed
by watching real progress: the stage's flow run Running in Prefect's store (and, for
the episode stages, at least one chunk task finished); reflect@1 runs the LLM reflector
against the stand-in endpoint, which holds its request.

Finished episodes are not redone, although a stage's outputs are replaced whole: each
chunk of episodes is a Prefect task whose result is persisted in Prefect's result store
(`.prefect/storage`) under runners.spread's cache key, a digest of everything the
chunk depends on (params, adapter bytes, pool snapshot, code, the chunk's episodes).
The re-run stage finds the chunks the killed one had finished there (task runs in state
Cached) and plays only the rest; the test counts them in Prefect's store.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from stage_project import Endpoint
from tiny import (
    REPRO_TIMEOUT,
    digest,
    flow_runs,
    left_behind,
    mlflow_query,
    run,
    serve_repro,
    set_params,
    stage_outputs,
    task_runs,
    validate,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]

# (stage, flow, iteration, watch chunk tasks?): one kill each, wherever DVC's order puts it.
# One stage of each kind: episodes in a worker pool (rollout; evaluate plays its episodes
# through the same chunks, pool and result cache), an LLM call (reflect), the pool's
# revision (revise), training (finetune; warmstart writes its adapter the same way). Each
# kill costs a restart (a Prefect server, the stage's start-up); evaluate@1 was a fifth
# target until 2026-12-06 (~40 s of the suite on one core for no new kind).
TARGETS = [
    ("rollout@1", "rollout", 1, True),
    ("reflect@1", "reflect", 1, False),
    ("revise@1", "revise", 1, False),
    ("finetune@1", "finetune", 1, False),
]

# Every stage the changed params make run again (the targets, and what reads their
# outputs or the reflector's params).
RERUN = {t[0] for t in TARGETS} | {"evaluate@0", "evaluate@1", "report"}


@pytest.fixture
def endpoint():
    ep = Endpoint()
    yield ep
    ep.close()


def _flow_running(proj: Path, flow: str, it: int | None, chunks: bool = False):
    """A condition: the flow's newest run at `it` is Running (and, with `chunks`, at least
    one of its chunk tasks finished); returns that run's id."""

    def cond() -> str | None:
        runs = flow_runs(proj, flow, it)
        if not runs or runs[-1][1] != "RUNNING":
            return None
        if chunks and not any(t[1] == "COMPLETED" for t in task_runs(proj, runs[-1][0])):
            return None
        return runs[-1][0]

    return cond


def _target_running(proj: Path, endpoint: Endpoint, left: list[tuple]):
    """A condition: the first target of `left` caught mid-flow, as (target, flow run id)."""
    conds = [(t, _flow_running(proj, t[1], t[2], t[3])) for t in left
             if not t[0].startswith("reflect")]

    def cond() -> tuple[tuple, str] | None:
        for t in left:
            if t[0].startswith("reflect") and endpoint.asked.is_set():
                return t, flow_runs(proj, t[1], t[2])[-1][0]
        for t, c in conds:
            if (run_id := c()):
                return t, run_id
        return None

    return cond


def _wait(cond: Callable[[], object], proc: subprocess.Popen, log: Path, what: str,
          timeout: float = REPRO_TIMEOUT):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := cond()):
            return got
        if proc.poll() is not None:
            raise AssertionError(f"dvc repro ended ({proc.returncode}) before {what}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


def test_kill_9_in_every_stage_kind(project, endpoint, tmp_path):
    proj, log = project, tmp_path / "repro.log"
    set_params(proj, rollout={"temperature": 0.9},
               rules={"reflector": "llm", "llm_endpoint": endpoint.url},
               # A worker pool to kill too, one worker: a stage's chunks run one after
               # another, so a kill lands between them (runner is not a DVC param).
               runner={"kind": "process", "workers": 1})
    outs = stage_outputs(proj)
    assert {t[0] for t in TARGETS} <= set(outs), outs.keys()
    kept: dict[str, str] = {}  # outputs of stages finished before a kill: never change
    killed: dict[str, tuple[str, int]] = {}  # stage -> (flow run id, chunks done at the kill)
    left = list(TARGETS)
    while left:
        marker = uuid.uuid4().hex
        if any(t[0].startswith("reflect") for t in left):
            endpoint.hold()
        proc = serve_repro(proj, marker, log)
        try:
            target, run_id = _wait(_target_running(proj, endpoint, left), proc, log,
                                   f"any of {[t[0] for t in left]} running")
            stage, flow, it, _ = target
            others = [o for s, os_ in outs.items() if s != stage for o in os_]
            before = digest(proj, others)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            endpoint.answer()
        left.remove(target)
        assert left_behind(marker) == [], f"processes left after killing {stage}"
        assert digest(proj, others) == before, f"an output changed killing {stage}"
        # Final from here on: what no stage re-runs, and what stages that ran in this test
        # before the target wrote (DVC runs one at a time: a stage killed earlier was run
        # again, to the end, before the target started).
        ran = set(re.findall(r"Running stage '([^']+)'", log.read_text())) - {stage}
        final = [o for s, os_ in outs.items() if s in ran or s not in RERUN for o in os_]
        kept.update(digest(proj, final))
        done = [t for t in task_runs(proj, run_id) if t[1] == "COMPLETED"]
        killed[stage] = (run_id, len(done))
        states = dict(flow_runs(proj, flow, it))
        assert states[run_id] == "RUNNING", f"{stage} was not mid-flow when killed"

    marker = uuid.uuid4().hex
    proc = serve_repro(proj, marker, log)
    try:
        assert proc.wait(REPRO_TIMEOUT) == 0, log.read_text(errors="replace")[-5000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert left_behind(marker, grace=20) == []
    assert "up to date" in run(["dvc", "status"], proj).stdout.lower()

    # Every output validates; none that was final at a kill changed through the recovery.
    for rels in outs.values():
        for rel in rels:
            assert (proj / rel).exists(), rel
            validate(proj / rel)
    final = digest(proj, list(kept))
    assert {k: final.get(k) for k in kept} == kept
    assert set(re.findall(r"Running stage '([^']+)'", log.read_text())) == RERUN

    # Each killed flow run shows Crashed; the episode stages took the chunks finished
    # before the kill from the result cache and played only the rest.
    for stage, flow, it, chunks in TARGETS:
        run_id, done = killed[stage]
        runs = flow_runs(proj, flow, it)
        assert dict(runs)[run_id] == "CRASHED", (stage, runs)
        assert runs[-1][1] == "COMPLETED", (stage, runs)
        if chunks:
            tasks = task_runs(proj, runs[-1][0])
            cached = sum(t[2] == "Cached" for t in tasks)
            assert 1 <= done <= cached < len(tasks), (stage, done, tasks)
    # No MLflow run is left RUNNING: a stage opens its run after its work (killed before:
    # no run), and one killed inside its run is ended KILLED by the next stage
    # (tracking.end_orphans; tests/test_tracking.py).
    assert mlflow_query(proj, "select name from runs where status = 'RUNNING'") == []
