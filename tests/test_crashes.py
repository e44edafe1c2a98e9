"""Which Running flow runs belong to a dead stage process, and a stopped stage stops
(jerp.crashes)."""

import signal
import subprocess
import sys

import psutil
import pytest
from stage_project import stage_env

from jerp.crashes import (
    Owner,
    orphaned_runs,
    owner_tag,
    parse_owner_tag,
    process_alive,
    this_process,
)


def test_owner_tag_round_trip():
    o = Owner("node-1.lan", 4242, 1764336000.25)
    assert owner_tag(o) == "jerp.owner:node-1.lan:4242:1764336000.25"
    assert parse_owner_tag(owner_tag(o)) == o
    assert parse_owner_tag("jerp.owner:h:notapid:1.0") is None
    assert parse_owner_tag("smoke") is None


def test_only_dead_owners_of_this_host_are_orphans():
    dead = Owner("here", 11, 100.0)
    live = Owner("here", 12, 100.0)
    remote = Owner("there", 13, 100.0)
    runs = [("a", ["x", owner_tag(dead)]), ("b", [owner_tag(live)]),
            ("c", [owner_tag(remote)]), ("d", [])]
    alive = {live}.__contains__
    assert orphaned_runs(runs, "here", alive) == ["a"]


def test_process_alive_tells_a_reused_pid_from_its_first_owner():
    me = this_process()
    assert process_alive(me)
    assert not process_alive(Owner(me.host, me.pid, me.started - 3600))
    assert not process_alive(Owner(me.host, 2**22 + 7, me.started))


STOPPABLE_STAGE = '''
import sys, time
from prefect import flow, task
from prefect.task_runners import ThreadPoolTaskRunner
from jerp.crashes import guard_stage
from jerp.runtime import configure

@task
def chunk():
    print("working", flush=True)
    time.sleep(600)  # a chunk of work on the runner's worker thread

@flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
def stage():
    chunk.submit().result()

configure(__import__("pathlib").Path(sys.argv[1]))
guard_stage()
stage()
'''


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_stage_exits_without_waiting_for_its_running_chunk(tmp_path, sig):
    """Before: the signal reached the main thread, whose unwinding waited for the chunk
    (DVC waited on the stage meanwhile); the stage now exits within STOP_GRACE seconds,
    and Prefect's temporary server with it."""
    script = tmp_path / "stage.py"
    script.write_text(STOPPABLE_STAGE)
    env = stage_env(PREFECT_HOME=str(tmp_path / ".prefect"))
    # a terminal's default for SIGINT: a job started in the background (`cmd &`, as CI
    # may be) inherits it ignored, and an ignored signal never reaches the stage
    stage = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert stage.stdout.readline().strip() == "working"
        family = psutil.Process(stage.pid).children(recursive=True)
        stage.send_signal(sig)
        _, err = stage.communicate(timeout=60)  # the chunk alone would take 600 s
    finally:
        if stage.poll() is None:
            stage.kill()
    assert stage.returncode in (128 + sig, -sig), err[-2000:]
    assert f"{signal.Signals(sig).name}: stopping this stage" in err
    _, left = psutil.wait_procs(family, timeout=15)
    assert [" ".join(p.cmdline()) for p in left] == []
