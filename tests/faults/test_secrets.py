"""No secret leaks: reflect@1 runs through its real flow with a sentinel API key and an
LLM reflector on an OpenAI-compatible endpoint; the key must reach the endpoint (the
Authorization header) and nowhere else: not Prefect's database, not MLflow, not the
stage's outputs, not its logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from stage_project import run_stage, stage_env, write_reflect_inputs

from jerp import paths
from jerp.records import read_proposals

pytestmark = pytest.mark.faults

SENTINEL = "sk-jerp-sentinel-7f3a9c1e5b"


def _env() -> dict[str, str]:
    """The sentinel key, Prefect at its most talkative and persisting task results."""
    return stage_env(OPENAI_API_KEY=SENTINEL, PREFECT_LOGGING_LEVEL="DEBUG",
                     PREFECT_RESULTS_PERSIST_BY_DEFAULT="true")


def files_holding(folder: Path, needle: bytes) -> list[str]:
    """Every regular file under folder (symlinks not followed) whose bytes hold needle."""
    hits = []
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
            hits.append(str(p.relative_to(folder)))
    return hits


def test_api_key_reaches_the_endpoint_and_no_store(make_project, alf_root, endpoint):
    proj = make_project(rules={"reflector": "llm", "llm_endpoint": endpoint.url,
                               "llm_model": "served"})
    write_reflect_inputs(proj, alf_root)
    res = run_stage(proj, "reflect", "--iteration", "1", "--prev", "0",
                    env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    assert endpoint.seen_auth and set(endpoint.seen_auth) == {f"Bearer {SENTINEL}"}
    assert any(p.accepted for p in read_proposals(proj / paths.proposals_file(1)))
    stores = [proj / ".prefect", proj / "mlflow.db", proj / "mlruns", proj / "data"]
    assert all(s.exists() for s in stores), [s for s in stores if not s.exists()]
    assert files_holding(proj, SENTINEL.encode()) == []
    assert SENTINEL not in res.stdout + res.stderr


def test_a_failing_endpoint_does_not_leak_the_key(make_project, alf_root):
    """The endpoint is not there: the stage stops (exit != 0) and its traceback, logs
    and Prefect's record of the crash hold no key."""
    proj = make_project(rules={"reflector": "llm", "llm_endpoint": "http://127.0.0.1:9/v1"})
    write_reflect_inputs(proj, alf_root)
    res = run_stage(proj, "reflect", "--iteration", "1", "--prev", "0",
                    env=_env())
    assert res.returncode != 0
    assert "Connection refused" in res.stderr or "URLError" in res.stderr, res.stderr[-2000:]
    assert not (proj / paths.proposals_file(1)).exists()
    assert files_holding(proj, SENTINEL.encode()) == []
    assert SENTINEL not in res.stdout + res.stderr
