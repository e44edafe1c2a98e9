"""A stage killed with -9 leaves nothing behind and shows as crashed.

Each stage is one process that runs one Prefect flow against Prefect's
temporary server, a uvicorn child process on the project's `.prefect` store.
A kill -9 of the stage runs no `atexit` hook, so Prefect's own clean-up never
stops that child, and the flow run stays "Running" in the store forever. Two
remedies, both at the start of every stage (`flows/common.load`):

- The temporary server is started here, from the main thread, with the kernel
  told to kill it when its parent dies (Linux `PR_SET_PDEATHSIG`; the signal
  follows the thread that forked, hence the main thread), and the stage and its
  worker processes are pointed at it (PREFECT_API_URL).
- Every flow run is tagged with its owner process (`jerp.owner:<host>:<pid>:<start
  time>`). A run still Running or Pending whose owner process on this host is
  gone is set to Crashed by the next stage that starts. A run of a live
  process (a queued experiment's stage running beside this one) is left alone;
  the start time tells a reused pid from its first owner.

A stage that is asked to stop (Ctrl-C, SIGTERM) stops within `STOP_GRACE` seconds
(`exit_when_stopped`): the flow's chunks run on worker threads, so the signal only
reaches the main thread, whose unwinding waits for the running chunk (minutes), and
`dvc repro` waits on the stage meanwhile. Outputs are written whole or not at all
(temp file, then rename), so cutting a chunk short loses nothing already written.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OWNER_PREFIX = "jerp.owner:"
PR_SET_PDEATHSIG = 1
STOP_GRACE = 5.0  # seconds a stopped stage may take to unwind before it exits hard
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float  # process start time, seconds since the epoch (psutil's create_time)


def owner_tag(owner: Owner) -> str:
    return f"{OWNER_PREFIX}{owner.host}:{owner.pid}:{owner.started:.2f}"


def parse_owner_tag(tag: str) -> Owner | None:
    """The owner a tag names, or None for any other tag (or a malformed one)."""
    if not tag.startswith(OWNER_PREFIX):
        return None
    try:
        host, pid, started = tag[len(OWNER_PREFIX):].rsplit(":", 2)
        return Owner(host, int(pid), float(started))
    except ValueError:
        return None


def orphaned_runs(runs: Iterable[tuple[str, Iterable[str]]], host: str,
                  alive: Callable[[Owner], bool]) -> list[str]:
    """Ids of the runs (id, tags) owned by a process of this host that is not alive.
    Runs of other hosts, and runs without an owner tag, cannot be judged: kept."""
    out = []
    for run_id, tags in runs:
        owners = [o for o in map(parse_owner_tag, tags) if o is not None]
        if owners and owners[0].host == host and not alive(owners[0]):
            out.append(run_id)
    return out


def this_process() -> Owner:
    import psutil

    return Owner(socket.gethostname(), os.getpid(),
                 round(psutil.Process().create_time(), 2))


def process_alive(owner: Owner) -> bool:
    """Is the owner's process still running (same pid, same start time)?"""
    import psutil

    try:
        started = psutil.Process(owner.pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return abs(started - owner.started) < 0.05


def dies_with_parent() -> Callable[[], None] | None:
    """A Popen preexec_fn that makes the child die with this process; None off Linux.
    The C function is looked up here, before any fork: the child only calls it."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: die now
            os._exit(1)

    return preexec


def healthy(api: str, timeout: float = 1.0) -> bool:
    """Does the Prefect API at `api` answer its health check?"""
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_healthy(api: str, server: subprocess.Popen, wait: float) -> bool:
    """Wait up to `wait` seconds for the server to answer; False if it died or never did."""
    deadline = time.monotonic() + wait
    while not healthy(api) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    return healthy(api)


def stop(server: subprocess.Popen, wait: float = 20) -> None:
    server.terminate()
    try:
        server.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def start_prefect_server() -> None:
    """Start Prefect's temporary server so that it dies with this process (see the
    module docstring), and point this process and its children at it. Nothing to do
    when PREFECT_API_URL names a real server.

    It is the server Prefect's ephemeral mode runs (uvicorn on the server app, UI off),
    started here rather than through `SubprocessASGIServer`: importing that class
    imports the whole server app into the stage, seconds of CPU that only the server's
    own process needs."""
    import atexit

    import prefect
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    if PREFECT_API_URL.value():
        return
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1"}
    app_dir = str(prefect.__module_path__.parent)
    for _ in range(3):  # a port taken between the probe and uvicorn's bind: another one
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", app_dir, "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
             str(port), "--log-level", "error", "--lifespan", "on"],
            env=env, preexec_fn=dies_with_parent())
        api = f"http://127.0.0.1:{port}/api"
        if wait_healthy(api, server, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()):
            break
        stop(server)
    else:
        raise RuntimeError(f"Prefect's temporary server did not start (last tried {api})")
    print(f"Prefect: temporary server on {api}, for this stage", file=sys.stderr)
    atexit.register(stop, server)
    os.environ["PREFECT_API_URL"] = api  # this process (every thread) and its children
    refresh_global_settings_context()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mark_orphans_crashed(owner: Owner) -> list[str]:
    """Set Crashed on Running/Pending flow runs (and their Running task runs) whose
    owner process on this host is gone; returns their ids."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    live = [StateType.RUNNING, StateType.PENDING]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=live))))
        dead = orphaned_runs(((str(r.id), r.tags) for r in runs), owner.host, process_alive)
        for run_id in dead:
            message = "its stage process died without reporting (killed?); marked by a later stage"
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id={"any_": [run_id]}),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(type=TaskRunFilterStateType(any_=live))))
            for t in tasks:
                client.set_task_run_state(t.id, Crashed(message=message), force=True)
            client.set_flow_run_state(run_id, Crashed(message=message), force=True)
    return dead


def exit_when_stopped(grace: float = STOP_GRACE) -> None:
    """Exit with 128 + the signal's number `grace` seconds after SIGINT or SIGTERM arrives,
    unless the process has ended by then. Call from the main thread.

    It watches the signal wakeup fd, which the interpreter writes from its C-level
    handler whatever Python handler is installed: Prefect swaps SIGTERM's handler in
    and out around each flow run, so chaining handlers would miss it. Without a Python
    handler (SIGTERM outside a flow run) the default action ends the process at once.
    `os._exit` runs no atexit hook: Prefect's temporary server dies with the stage
    (PR_SET_PDEATHSIG), and its Running flow run is marked Crashed by the next stage."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        while True:
            got = [b for b in os.read(read_end, 64) if b in STOP_SIGNALS]
            if got:
                name = signal.Signals(got[0]).name
                print(f"{name}: stopping this stage (at most {grace:g} s)", file=sys.stderr,
                      flush=True)
                time.sleep(grace)
                os._exit(128 + got[0])

    threading.Thread(target=watch, name="jerp-stop-watch", daemon=True).start()


def guard_stage() -> Owner:
    """Call once, from the main thread, before the stage's flow runs."""
    from prefect.context import TagsContext

    owner = this_process()
    exit_when_stopped()
    start_prefect_server()
    try:
        mark_orphans_crashed(owner)
    except Exception as e:  # housekeeping: never the reason a stage fails
        print(f"warning: could not mark crashed Prefect runs: {type(e).__name__}: {e}",
              file=sys.stderr)
    # Entered for the process's life (never exited): every flow run it creates carries
    # its owner. `prefect.tags(...)` would not do: its generator, once collected, exits.
    current = TagsContext.get().current_tags
    TagsContext(current_tags=current | {owner_tag(owner)}).__enter__()
    return owner
