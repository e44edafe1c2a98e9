"""Shared fixtures: the real model (loaded once per session from the converted cache)
and the real ALFWorld data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jerp.runtime import configure

ROOT = Path(__file__).resolve().parents[1]
configure(ROOT)


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
