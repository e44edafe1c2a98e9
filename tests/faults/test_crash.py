"""kill -9 of a stage mid-run: no process is left behind (Prefect's temporary server
dies with the stage), earlier outputs are unchanged, and the next stage that starts
marks the dead stage's flow run Crashed.

reflect@1 with the LLM reflector is the stage killed: its endpoint (a local
OpenAI-compatible stand-in) holds the request, so the kill lands while the flow
run is Running, at a moment the test knows, not after a guessed sleep."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil
import pytest
from stage_project import run_stage, stage_env, write_reflect_inputs

pytestmark = pytest.mark.faults


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _flow_runs(proj: Path, name: str) -> list[str]:
    """State types of the named flow's runs, oldest first."""
    con = sqlite3.connect(proj / ".prefect" / "prefect.db")
    try:
        rows = con.execute("select r.state_type from flow_run r join flow f on r.flow_id = f.id "
                           "where f.name = ? order by r.created", (name,)).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def test_kill_9_leaves_no_process_and_the_next_stage_marks_it_crashed(
        make_project, alf_root, endpoint):
    proj = make_project(rules={"reflector": "llm", "llm_endpoint": endpoint.url})
    write_reflect_inputs(proj, alf_root)
    args = ("--iteration", "1", "--prev", "0")
    first = run_stage(proj, "reflect", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _snapshot(proj / "data")

    endpoint.hold()
    stage = subprocess.Popen(["sh", "flows/python", "flows/reflect.py", *args], cwd=proj,
                             env=stage_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert endpoint.asked.wait(180), "the stage never reached its endpoint"
        family = psutil.Process(stage.pid).children(recursive=True)
        assert any("uvicorn" in " ".join(c.cmdline()) for c in family), family
        stage.send_signal(signal.SIGKILL)
        stage.wait(30)
    finally:
        if stage.poll() is None:
            stage.kill()
        endpoint.answer()
    _, left = psutil.wait_procs(family, timeout=15)
    orphans = [" ".join(p.cmdline()) for p in left]
    for p in left:  # never leave the orphans this test found behind
        p.kill()
    assert orphans == []

    assert _snapshot(proj / "data") == before
    assert _flow_runs(proj, "reflect") == ["COMPLETED", "RUNNING"]
    nxt = run_stage(proj, "revise", *args)
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    assert _flow_runs(proj, "reflect") == ["COMPLETED", "CRASHED"]
    assert _flow_runs(proj, "revise") == ["COMPLETED"]
