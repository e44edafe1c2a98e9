"""Fault tests' fixtures: make_project(**overrides), a tiny real project in tmp_path, and
a stand-in LLM endpoint."""

from __future__ import annotations

import pytest
from stage_project import Endpoint, stage_env
from stage_project import make_project as _make_project


@pytest.fixture
def make_project(tmp_path, root, alf_root, model_cache):
    """make_project(**overrides) -> a project copy on the tiny preset (see stage_project)."""

    def make(**overrides: dict):
        return _make_project(tmp_path / "proj", root, alf_root, model_cache, **overrides)

    return make


@pytest.fixture
def endpoint():
    """A stand-in OpenAI-compatible endpoint (stage_project.Endpoint), closed after the test."""
    ep = Endpoint()
    yield ep
    ep.close()


@pytest.fixture
def server_env(prefect_api) -> dict[str, str]:
    """A stage environment that reports to the session's Prefect server (conftest), for
    tests that are not about Prefect's temporary server."""
    return stage_env(PREFECT_API_URL=prefect_api)
