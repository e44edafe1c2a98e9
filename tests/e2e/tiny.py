"""The tiny project the end-to-end tests run, and what they read back from it.

One project (git + DVC, presets/tiny.yaml, the offline contrastive reflector) is built
once per test run by `python -m jerp.prefect_server -- dvc repro`, as `make run` does
(conftest.pristine); each test works on its own copy (`copy_project`), so tests that
re-run, kill or queue stages never disturb another, and xdist workers can share it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from stage_project import BIN, stage_env

from jerp.crashes import free_port

MARKER = "JERP_FAULT_TEST_MARKER"
REPRO_TIMEOUT = 1500


def run(cmd: list[str], proj: Path, check: bool = True, timeout: float = REPRO_TIMEOUT,
        activated: bool = True, **extra: str) -> subprocess.CompletedProcess:
    """A command in the project; `activated=False`: the venv is not on PATH (as a user
    typing `.venv/bin/dvc ...` in a fresh clone)."""
    env = project_env(proj, **extra)
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


def project_env(proj: Path, **extra: str) -> dict[str, str]:
    env = stage_env(PYTHONPATH=str(proj / "src"), **extra)
    env.pop("PYTEST_CURRENT_TEST", None)  # MLflow changes its behaviour under pytest
    return env


def commit(proj: Path, msg: str) -> None:
    run(["git", "add", "-A"], proj)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", msg], proj)


def set_params(proj: Path, **sections: dict) -> None:
    """Merge values into params.yaml's sections (one level deep)."""
    path = proj / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def copy_project(src: Path, dest: Path) -> Path:
    """A working copy of a finished project: files, git, DVC cache and run stores. MLflow
    keeps its artifact folder as an absolute path: pointed at the copy's own."""
    shutil.copytree(src, dest, symlinks=True)
    old, new = f"file://{src}", f"file://{dest}"
    con = sqlite3.connect(dest / "mlflow.db")
    try:
        con.execute("update experiments set artifact_location = "
                    "replace(artifact_location, ?, ?)", (old, new))
        con.execute("update runs set artifact_uri = replace(artifact_uri, ?, ?)", (old, new))
        con.commit()
    finally:
        con.close()
    return dest


# ------------------------------------------------------------------ processes


def serve_repro(proj: Path, marker: str, log: Path) -> subprocess.Popen:
    """`python -m jerp.prefect_server -- dvc repro` in its own process group, every process of it
    marked by `marker` in its environment."""
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "jerp.prefect_server", "--port", str(free_port()), "--",
             "dvc", "repro"], cwd=proj, env=project_env(proj, **{MARKER: marker}),
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


# ------------------------------------------------------------------ the run stores


def prefect_query(proj: Path, sql: str, args: tuple = ()) -> list[tuple]:
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
    return prefect_query(proj, "select r.id, r.state_type from flow_run r join flow f on "
                         "r.flow_id = f.id where f.name = ? and "
                         "json_extract(r.parameters, '$.iteration') is ? order by r.created",
                         (flow, iteration))


def task_runs(proj: Path, flow_run: str) -> list[tuple[str, str, str]]:
    """(name, state type, state name) of a flow run's task runs."""
    return prefect_query(proj, "select name, state_type, state_name from task_run "
                         "where flow_run_id = ?", (flow_run,))


def mlflow_query(proj: Path, sql: str, args: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(f"file:{proj / 'mlflow.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------ outputs


def stage_outputs(proj: Path) -> dict[str, list[str]]:
    """Each stage's declared outputs and metrics (dvc.yaml, foreach expanded), by name
    (`rollout@1`; a stage's `addressing` would carry dvc.yaml's path from the cwd)."""
    from dvc.repo import Repo

    with Repo(str(proj)) as repo:
        return {s.name: [o.def_path for o in s.outs] for s in repo.index.stages}


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
        "warmstart_settings.json": lambda f: records.read_model(f, records.WarmstartSettings),
    }
    if path.is_dir() and name == "adapter":
        assert read_adapter(path) is not None, path
    elif name in readers:
        readers[name](path)
    elif name.endswith(".jsonl"):  # references, rollouts, wins, eval: trajectories
        records.read_trajectories(path)
    elif path.parent.name == "metrics":  # typed records: a missing field fails here
        from jerp import metrics_schema as ms

        kinds = {"iter": ms.EvalMetrics, "rollout": ms.RolloutStats, "train": ms.TrainRecord,
                 "references": ms.ReferenceStats}
        ms.read_record(path, kinds[name.removesuffix(".json").split("_")[0]])
    elif path.parent.name == "reports":
        assert path.stat().st_size > 0, path
    else:
        raise AssertionError(f"no schema check for output {path}: add one to validate()")
