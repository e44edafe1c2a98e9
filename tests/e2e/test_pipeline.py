"""The real pipeline on the tiny preset, as users run it: `dvc repro` through Prefect
flows into MLflow, killed in every stage kind, checked as a user meets it, then two
queued experiments and one workspace experiment on top of it.

One project (git + DVC, presets/tiny.yaml, the LLM reflector on a stand-in endpoint:
tests/stage_project.Endpoint), one pipeline; the tests run in this file's order, and
each later one stands alone (`finished` completes and commits the pipeline when the
kill test did not run first):

test_kill_9_in_every_stage_kind builds the pipeline: one kill in each stage kind
(rollout, reflect, revise, finetune, evaluate). `python -m jerp.serve -- dvc repro`
(what `make run` does) is started, the test watches for a target stage to be in the
middle of its flow run, kills the whole process group with -9, checks that no process
of the run is left (the Prefect server `jerp.serve` started included: every process of
the run carries a marker in its environment, and /proc is scanned for it) and that no
output of an earlier stage changed, then starts it again, up to the next target; a last
run completes the pipeline. Each kill is placed by watching real progress: the stage's
flow run Running in Prefect's store (and, for the episode stages, at least one chunk
task finished); reflect@1 runs the LLM reflector against the stand-in endpoint, which
holds its request.

Finished episodes are not redone, although a stage's outputs are replaced whole: each
chunk of episodes is a Prefect task whose result is persisted in Prefect's result store
(`.prefect/storage`) under runners.spread's cache key, a digest of everything the
chunk depends on (params, adapter bytes, pool snapshot, code, the chunk's episodes).
The re-run stage finds the chunks the killed one had finished there (task runs in state
Cached) and plays only the rest; the test counts them in Prefect's store.

test_two_queued_experiments_run_concurrently: `dvc queue start -j 2` on react and
rules_only. What was found about "database is locked" (SQLite stores, two writers):
every stage of both experiments starts Prefect's temporary server (PREFECT_API_URL is
unset under the queue's workers), so two uvicorn servers write one `.prefect/prefect.db`
at once, and both experiments' stages write one `mlflow.db`. Neither failed: Prefect
opens its SQLite connections in WAL mode with a 60 s busy timeout, and MLflow (3.x) sets
a 20 s busy timeout on every session; the stores' writes are short, so a writer waits
for the other instead of failing. The test keeps it so: it fails on the message in
either experiment's log. Runs do not mix: each experiment's stages find their MLflow
parent by a hash that includes $DVC_EXP_NAME (tracking.py), and a stage marks Crashed
only runs whose owner process is dead (crashes.py), never the other experiment's.

test_exp_run_switches_method_without_an_activated_venv comes last: it changes the
workspace's params and outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from stage_project import BIN, Endpoint, make_project, stage_env

pytestmark = pytest.mark.slow
MARKER = "JERP_FAULT_TEST_MARKER"
REPRO_TIMEOUT = 1500


# ------------------------------------------------------------------ the project and its run


@pytest.fixture(scope="module")
def endpoint():
    ep = Endpoint()
    yield ep
    ep.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory, root, alf_root, model_cache, endpoint) -> Path:
    """A git + DVC project on the tiny preset whose reflector is the stand-in endpoint."""
    proj = make_project(tmp_path_factory.mktemp("faults") / "proj", root, alf_root,
                        model_cache, rules={"reflector": "llm", "llm_endpoint": endpoint.url})
    (proj / ".gitignore").write_text(".prefect/\nmlflow.db\nmlruns/\n.cache/\n.venv\n")
    run(["git", "init", "-q"], proj)
    run(["dvc", "init", "-q"], proj)
    return proj


def run(cmd: list[str], proj: Path, check: bool = True, timeout: float = REPRO_TIMEOUT,
        activated: bool = True) -> subprocess.CompletedProcess:
    """A command in the project; `activated=False`: the venv is not on PATH (as a user
    typing `.venv/bin/dvc ...` in a fresh clone)."""
    env = _env(proj)
    if not activated:
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                      if Path(p) != BIN)
        env.pop("PYTHONPATH")
    res = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                             f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


def _env(proj: Path, **extra: str) -> dict[str, str]:
    env = stage_env(PYTHONPATH=str(proj / "src"), **extra)
    env.pop("PYTEST_CURRENT_TEST", None)  # MLflow changes its behaviour under pytest
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_repro(proj: Path, marker: str, log: Path) -> subprocess.Popen:
    """`python -m jerp.serve -- dvc repro` in its own process group, every process of it
    marked by `marker` in its environment."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "jerp.serve", "--port", str(_free_port()), "--",
             "dvc", "repro"], cwd=proj, env=_env(proj, **{MARKER: marker}),
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def marked(marker: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose environment carries the marker."""
    needle = f"{MARKER}={marker}".encode()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes().split(b"\0"):
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ")
                            .decode(errors="replace").strip()))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return out


def left_behind(marker: str, grace: float = 30) -> list[str]:
    """Processes of a killed run still alive after `grace` seconds (killed, then named)."""
    deadline = time.monotonic() + grace
    while (procs := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, _ in procs:  # never leave what this test found behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return [cmd for _, cmd in procs]


# ------------------------------------------------------------------ Prefect's store


def _query(proj: Path, sql: str, args: tuple = ()) -> list[tuple]:
    """Read Prefect's store; [] while it does not exist yet or is busy."""
    db = proj / ".prefect" / "prefect.db"
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return []


def flow_runs(proj: Path, flow: str, iteration: int | None) -> list[tuple[str, str]]:
    """(id, state type) of the flow's runs at that iteration, oldest first."""
    return _query(proj, "select r.id, r.state_type from flow_run r join flow f on "
                  "r.flow_id = f.id where f.name = ? and "
                  "json_extract(r.parameters, '$.iteration') is ? order by r.created",
                  (flow, iteration))


def task_runs(proj: Path, flow_run: str) -> list[tuple[str, str, str]]:
    """(name, state type, state name) of a flow run's task runs."""
    return _query(proj, "select name, state_type, state_name from task_run "
                  "where flow_run_id = ?", (flow_run,))


# ------------------------------------------------------------------ outputs


def stage_outputs(proj: Path) -> dict[str, list[str]]:
    """Each stage's declared outputs and metrics (dvc.yaml, foreach expanded), by name."""
    from dvc.repo import Repo

    with Repo(str(proj)) as repo:
        return {s.addressing: [o.def_path for o in s.outs] for s in repo.index.stages}


def digest(proj: Path, rels: list[str]) -> dict[str, str]:
    """sha256 of every file under the given outputs (folders walked)."""
    out = {}
    for rel in rels:
        p = proj / rel
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                out[str(f.relative_to(proj))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def validate(path: Path) -> None:
    """Read one output with its schema's reader (records.py); raises on a bad one."""
    from jerp import records
    from jerp.policy.model import read_adapter

    name = path.name
    readers: dict[str, Callable[[Path], object]] = {
        "tasks.json": records.read_tasks, "rules.json": records.read_snapshot,
        "proposals.jsonl": records.read_proposals,
        "expert_states.json": lambda f: records.read_model(f, records.ExpertStates),
    }
    if path.is_dir() and name == "adapter":
        assert read_adapter(path) is not None, path
    elif name in readers:
        readers[name](path)
    elif name.endswith(".jsonl"):  # references, rollouts, wins, eval: trajectories
        records.read_trajectories(path)
    elif path.parent.name == "metrics":
        assert isinstance(records.read_json(path), dict), path
    elif path.parent.name == "reports":
        assert path.stat().st_size > 0, path
    else:
        raise AssertionError(f"no schema check for output {path}: add one to validate()")


# ------------------------------------------------------------------ the kill test


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


def _wait(cond: Callable[[], object], proc: subprocess.Popen, log: Path, what: str,
          timeout: float = REPRO_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := cond()):
            return got
        if proc.poll() is not None:
            raise AssertionError(f"dvc repro ended ({proc.returncode}) before {what}:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


# (stage, flow, iteration, watch chunk tasks?): one kill each, wherever DVC's order puts it.
# One stage of each kind: warmstart writes its adapter as finetune does, evaluate@0 plays
# as evaluate@1 does; each kill costs a restart (a Prefect server, the stage's start-up).
TARGETS = [
    ("rollout@1", "rollout", 1, True),
    ("reflect@1", "reflect", 1, False),
    ("revise@1", "revise", 1, False),
    ("finetune@1", "finetune", 1, False),
    ("evaluate@1", "evaluate", 1, True),
]


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


@pytest.mark.faults
def test_kill_9_in_every_stage_kind(project, endpoint, tmp_path):
    proj, log = project, tmp_path / "repro.log"
    outs = stage_outputs(proj)
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
            earlier = [o for s, os_ in outs.items() if s != stage for o in os_]
            before = digest(proj, earlier)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            endpoint.answer()
        left.remove(target)
        assert left_behind(marker) == [], f"processes left after killing {stage}"
        assert digest(proj, earlier) == before, f"an earlier output changed killing {stage}"
        kept.update(before)
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

    # Every output validates; none that existed at a kill changed through the recovery.
    for rels in outs.values():
        for rel in rels:
            assert (proj / rel).exists(), rel
            validate(proj / rel)
    final = digest(proj, list(kept))
    assert {k: final.get(k) for k in kept} == kept

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
    assert _mlflow(proj, "select name from runs where status = 'RUNNING'") == []
    commit(proj, "run")


# ------------------------------------------------------------------ the queue test

QUEUED = {"q-react": "react", "q-rules_only": "rules_only"}


def _mlflow(proj: Path, sql: str, args: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(f"file:{proj / 'mlflow.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


@pytest.fixture
def finished(project) -> Path:
    """The pipeline complete and committed (the queue's baseline, the state every user check
    reads): the kill test leaves it so; this makes each later test stand alone."""
    if "up to date" not in run(["dvc", "status"], project).stdout.lower():
        run(["dvc", "repro"], project)
    if run(["git", "status", "--porcelain"], project).stdout.strip():
        commit(project, "run")
    return project


def commit(proj: Path, msg: str) -> None:
    run(["git", "add", "-A"], proj)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", msg], proj)


# ------------------------------------------------------------------ what a user meets


def test_repro_writes_every_stage_output(finished):
    for rel in ("data/tasks.json", "data/references.jsonl", "data/iter_0/rules.json",
                "data/iter_0/adapter/adapter.json", "data/iter_1/adapter/adapter_model.safetensors",
                "metrics/train_0.json", "metrics/train_1.json", "metrics/rollout_1.json",
                "data/iter_0/eval.jsonl", "data/iter_1/rollouts.jsonl",
                "data/iter_1/proposals.jsonl", "data/iter_1/rules.json",
                "data/iter_1/eval.jsonl", "metrics/iter_0.json", "metrics/iter_1.json",
                "reports/index.md", "reports/success.png", "reports/iterations.csv"):
        assert (finished / rel).exists(), rel
    evals = [json.loads(x) for x in (finished / "data/iter_0/eval.jsonl").read_text().splitlines()]
    assert len(evals) == 2 and all(1 <= e["n_steps"] <= 4 for e in evals)
    assert all(e["steps"][0]["observation"] for e in evals)


def test_metrics_show_success_per_task_type(finished):
    out = run(["dvc", "metrics", "show", "--json"], finished).stdout
    assert "success_by_type" in out and "pick_heat_then_place_in_recep" in out


def test_rerun_is_a_no_op(finished):
    out = run(["dvc", "repro"], finished).stdout
    assert "up to date" in out.lower()


def test_reflection_changed_the_pool(finished):
    props = (finished / "data/iter_1/proposals.jsonl").read_text().splitlines()
    assert props, "the reflector proposed nothing for failed rollouts"
    diff = json.loads(run(["jerp", "rules", "diff", "0", "1", "--json"], finished).stdout)
    assert diff["added"], diff
    shown = run(["jerp", "rules", "show", "--iteration", "1"], finished).stdout
    assert diff["added"][0]["id"] in shown


def test_runs_are_in_mlflow_and_prefect(finished):
    con = sqlite3.connect(finished / "mlflow.db")
    names = {r[0] for r in con.execute("select name from runs")}
    assert {"prepare", "warmstart@0", "evaluate@0", "rollout@1", "revise@1", "finetune@1",
            "evaluate@1"} <= names
    keys = {r[0] for r in con.execute("select key from metrics")}
    assert "success" in keys and "rules" in keys
    pdb = finished / ".prefect" / "prefect.db"
    flows = {r[0] for r in sqlite3.connect(pdb).execute("select name from flow")}
    assert {"prepare", "warmstart", "evaluate", "rollout", "reflect", "revise", "finetune",
            "report"} <= flows


def test_bad_params_fail_cleanly_and_keep_outputs(finished):
    before = (finished / "data/iter_0/eval.jsonl").read_text()
    params = finished / "params.yaml"
    good = params.read_text()
    params.write_text(good.replace("mode: rank", "mode: beam"))
    try:
        res = run(["dvc", "repro"], finished, check=False)
    finally:
        params.write_text(good)
    assert res.returncode != 0
    assert "policy.mode" in res.stderr + res.stdout and "'beam'" in res.stderr + res.stdout
    assert (finished / "data/iter_0/eval.jsonl").read_text() == before


def test_rules_diff_reads_a_git_revision(finished):
    """Versions at a git revision come from dvc.lock + the DVC cache (via dvc.api)."""
    here = json.loads(run(["jerp", "rules", "diff", "0", "1", "--json"], finished).stdout)
    at_rev = json.loads(run(["jerp", "rules", "diff", "HEAD:0", "HEAD:1", "--json"],
                            finished).stdout)
    assert at_rev == here
    bad = run(["jerp", "rules", "diff", "HEAD:0", "nope"], finished, check=False)
    assert bad.returncode != 0 and "REV:I" in bad.stderr


@pytest.mark.faults
def test_two_queued_experiments_run_concurrently(finished):
    """`dvc queue start -j 2`: two experiments (react, rules_only) at once, each in its own
    copy under .dvc/tmp/exps, both reporting to the project's Prefect and MLflow stores."""
    proj = finished
    started = time.time()
    for name, method in QUEUED.items():
        run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"run.method={method}"], proj)
    marker = uuid.uuid4().hex
    # The queue's workers are daemons: they must not hold this call's pipes open.
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=proj, check=True,
                   env=_env(proj, **{MARKER: marker}), stdout=subprocess.DEVNULL,
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

    # Outputs: each experiment's params, metrics and trajectories are its own method's.
    import dvc.api

    rows = {r["Experiment"]: r for r in dvc.api.exp_show(repo=str(proj))
            if r.get("Experiment") in QUEUED}
    assert set(rows) == set(QUEUED), rows.keys()
    for name, method in QUEUED.items():
        row = rows[name]
        assert row["run.method"] == method, row
        rollout = json.loads(dvc.api.read("metrics/rollout_1.json", repo=str(proj),
                                          rev=row["rev"]))
        metrics = json.loads(dvc.api.read("metrics/iter_1.json", repo=str(proj),
                                          rev=row["rev"]))
        if method == "react":  # no experience, no rules
            assert rollout["episodes"] == 0 and metrics["rules_in_pool"] == 0, (rollout, metrics)
        else:
            assert rollout["episodes"] == 4 and metrics["rules_in_pool"] >= 1, (rollout, metrics)
        evals = dvc.api.read("data/iter_1/eval.jsonl", repo=str(proj), rev=row["rev"])
        assert {json.loads(x)["method"] for x in evals.splitlines()} == {method}

    # MLflow: one parent run per experiment, every stage run under it of its own method.
    for name, method in QUEUED.items():
        parents = [r[0] for r in _mlflow(proj, "select run_uuid from tags where key = "
                                         "'dvc.exp_name' and value = ?", (name,))]
        assert len(parents) == 1, (name, parents)
        children = _mlflow(proj, "select t.run_uuid, p.value, r.start_time, r.end_time "
                           "from tags t join params p on p.run_uuid = t.run_uuid and "
                           "p.key = 'run.method' join runs r on r.run_uuid = t.run_uuid "
                           "where t.key = 'mlflow.parentRunId' and t.value = ?", parents)
        assert children and {c[1] for c in children} == {method}, (name, children)
        rows[name]["span"] = (min(c[2] for c in children), max(c[3] or 0 for c in children))
    (a0, a1), (b0, b1) = (rows[n]["span"] for n in QUEUED)
    assert max(a0, b0) < min(a1, b1), "the two experiments did not run at the same time"

    # Prefect: every flow run of the two experiments completed: none failed on the store,
    # none was marked Crashed by the other experiment's stages.
    states = _query(proj, "select f.name, r.state_type from flow_run r join flow f on "
                    "r.flow_id = f.id where r.created >= ?",
                    (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),))
    assert states and {s for _, s in states} == {"COMPLETED"}, states


# ------------------------------------------------------------------ last: a workspace experiment


def test_exp_run_switches_method_without_an_activated_venv(finished):
    """`.venv/bin/dvc exp run -S run.method=...` as the README shows it: stage commands
    find the project's interpreter themselves. The warm start is shared (not re-run).
    The method is jerp_h2r, so this also runs H2R's hierarchy through every stage: the
    executor's subgoal slot in rollouts, hindsight reflection into planning and execution
    memories, and a policy update trained on the prompts with their slots. Its reflector
    is the offline default (contrastive), which the kill test's pipeline does not run."""
    from jerp.records import read_snapshot, read_trajectories

    dvc = str(finished / ".venv" / "bin" / "dvc")
    res = run([dvc, "exp", "run", "-S", "run.method=jerp_h2r", "-S", "rules.reflector=contrastive"],
              finished, activated=False)
    out = res.stdout + res.stderr
    assert "Running stage 'finetune@1'" in out and "Running stage 'warmstart'" not in out
    rollouts = read_trajectories(finished / "data/iter_1/rollouts.jsonl")
    assert rollouts and all(t.subgoals and t.steps[0].slot.startswith("Current subgoal: ")
                            for t in rollouts)
    levels = {r.level for r in read_snapshot(finished / "data/iter_1/rules.json").rules}
    assert levels == {"planning", "execution"}
    manifest = json.loads((finished / "data/iter_1/adapter/adapter.json").read_text())
    assert manifest["stage"] == "finetune"
    evals = read_trajectories(finished / "data/iter_1/eval.jsonl")
    assert evals and all(s.subgoal is not None for t in evals for s in t.steps)
    table = run([dvc, "exp", "show", "--csv"], finished, activated=False).stdout
    assert "jerp_h2r" in table and "jerp" in table
