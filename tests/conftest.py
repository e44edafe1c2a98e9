"""Shared fixtures: the real model (loaded once per session from the converted cache),
the real ALFWorld data and one Prefect server for the session; and how the suite runs:
a core per xdist worker, a time limit per mark, the longest files first.

`make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadfile`: a file's
tests stay on one worker, in order, so module fixtures such as the e2e pipeline are
built once). Each worker is pinned to a core of its own before torch is imported, so
every torch process it starts (stages, pools, servers inherit the pin) sizes its
threads to one core: two workers never oversubscribe the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jerp.crashes import free_port
from jerp.runtime import configure

ROOT = Path(__file__).resolve().parents[1]


def _pin_worker() -> None:
    """gwN runs on core N (mod the cores this process may use), one thread each."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


_pin_worker()
# In-process Prefect flows and stages write to a store of this test session, never the
# developer's .prefect (configure only sets what is unset).
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".cache" / "test-prefect"
                                          / os.environ.get("PYTEST_XDIST_WORKER", "main")))
configure(ROOT)

# Time limits per mark (pytest-timeout): a hung server or stage fails its own test with a
# traceback instead of stalling the run; ~3x the slowest such test measured on 2 cores.
# A test's limit covers its fixtures' set-up (a module's pipeline is built in the first).
TIMEOUTS = {"e2e": 2400, "faults": 900, "slow": 900, "cluster": 900}
UNMARKED_TIMEOUT = 300
# Files in the order workers take them: the longest first, so neither worker is left
# with a long file at the end (measured durations; the rest follow in their own order).
LONGEST_FIRST = (
    "tests/e2e/test_kill.py",  # first: its worker builds the tiny pipeline the others copy
    "tests/faults/test_corrupt_inputs.py",
    "tests/e2e/test_queue.py",
    "tests/test_webshop_pipeline.py",
    "tests/test_runners.py",
    "tests/e2e/test_exp_run.py",
    "tests/test_packing.py",
    "tests/test_train.py",
    "tests/e2e/test_user_checks.py",
    "tests/faults/test_crash.py",
    "tests/faults/test_secrets.py",
    "tests/test_kvcache.py",
    "tests/test_memory_slot.py",
    "tests/test_baselines.py",
    "tests/cluster/test_served_policy.py",
    "tests/test_segment.py",
    "tests/cluster/test_dvc_remote.py",
    "tests/test_alfworld.py",
    "tests/test_stages.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            limits = [TIMEOUTS[m.name] for m in item.iter_markers() if m.name in TIMEOUTS]
            item.add_marker(pytest.mark.timeout(max(limits, default=UNMARKED_TIMEOUT)))
    rank = {f: k for k, f in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.nodeid.split("::")[0], len(rank)))  # stable


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_temporary_server():
    """An in-process flow with no server to report to starts Prefect's temporary server,
    which Prefect stops at exit, logging it to a stream pytest has closed by then (a
    'Logging error' traceback after the last test). Stopped here, as Prefect's own test
    fixtures stop it, while output is still captured."""
    yield
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().stop()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def alf_root() -> Path:
    from jerp.envs.alfworld import resolve_data_root

    return resolve_data_root(None, os.environ, ROOT)


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return ROOT / ".cache" / "models"


@pytest.fixture(scope="session")
def policy_fp32(model_cache):
    from jerp.policy.model import load_policy, set_threads

    set_threads(0)
    return load_policy("smollm2", model_cache, dtype="float32")


@pytest.fixture(scope="session")
def policy_bf16(model_cache):
    from jerp.policy.model import load_policy

    return load_policy("smollm2", model_cache, dtype="bfloat16")


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory) -> str:
    """One real Prefect server (`prefect server start`, as `make prefect-ui` starts it) for
    the tests of this worker that do not test the temporary server itself: their stage
    processes and in-process flows report to it instead of each starting Prefect's
    temporary server on a new store (11-27 s on 2 cores). Its store is this session's."""
    from jerp.prefect_server import start_server, stop, wait_healthy

    home = tmp_path_factory.mktemp("prefect-server")
    api = f"http://127.0.0.1:{(port := free_port())}/api"
    log = home / "server.log"
    server = start_server(port, log, env={**os.environ, "PREFECT_HOME": str(home)})
    try:
        if not wait_healthy(api, server, 180):
            pytest.fail(f"no Prefect server at {api}:\n{log.read_text()[-3000:]}")
        yield api
    finally:
        stop(server)
