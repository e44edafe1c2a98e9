"""A workspace experiment as the README shows it, on a copy of the finished tiny project."""

from __future__ import annotations

import time

import httpx
import pytest
from tiny import run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _flow_runs(api: str, flow: str, after: str) -> list[dict]:
    """The flow's runs that started after `after`, from the Prefect server's REST API."""
    body = {"flows": {"name": {"any_": [flow]}},
            "flow_runs": {"start_time": {"after_": after}}}
    res = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30)
    res.raise_for_status()
    return res.json()


def test_exp_run_without_an_activated_venv(project, prefect_api):
    """`.venv/bin/dvc exp run` with the venv not on PATH (a fresh clone, nothing
    activated): the stage command (`sh flows/python ...`) finds the project's interpreter
    itself, and the stage reports to a running Prefect server (PREFECT_API_URL, as beside
    `make prefect-ui`). One stage is forced, the report: every stage starts the same way.

    No end-to-end test switches run.method any more (test_queue changes evaluation params
    only); H2R's pieces are tested on the real engine and model one by one: the slotted warm start
    derived from run.method (test_baselines, test_warmstart_slots), subgoal slots in
    episodes (test_memory_slot), hindsight reflection into both levels (test_stages) and
    training on slotted prompts (test_packing). Until 2026-12-06 this test ran jerp_h2r
    through the whole tiny pipeline (~300 s of the suite on one core)."""
    dvc = str(project / ".venv" / "bin" / "dvc")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    res = run([dvc, "exp", "run", "-n", "report-again", "--force", "--single-item", "report"],
              project, activated=False, PREFECT_API_URL=prefect_api)
    out = res.stdout + res.stderr
    assert "Running stage 'report'" in out and "Running stage 'evaluate" not in out, out
    runs = _flow_runs(prefect_api, "report", started)
    assert [r["state_type"] for r in runs] == ["COMPLETED"], runs
    table = run([dvc, "exp", "show", "--csv"], project, activated=False).stdout
    assert "report-again" in table
