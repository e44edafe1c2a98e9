"""The tiny pipeline, built once per test run and shared by every end-to-end test.

Under pytest-xdist the first worker to ask builds it in the run's shared temporary
folder while holding a file lock; the others wait for it and then use the same one.
Tests never change it: each works on a copy (`project`).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from filelock import FileLock
from stage_project import make_project
from tiny import commit, copy_project, free_port, run


def build(dest: Path, root: Path, alf_root: Path, model_cache: Path) -> Path:
    """A git + DVC project on the tiny preset, its pipeline run by `python -m jerp.prefect_server
    -- dvc repro` (what `make run` does) and committed."""
    proj = make_project(dest, root, alf_root, model_cache)
    (proj / ".gitignore").write_text(".prefect/\nmlflow.db\nmlruns/\n.cache/\n.venv\n")
    run(["git", "init", "-q"], proj)
    run(["dvc", "init", "-q"], proj)
    run([sys.executable, "-m", "jerp.prefect_server", "--port", str(free_port()), "--", "dvc",
         "repro"], proj)
    commit(proj, "run")
    return proj


@pytest.fixture(scope="session")
def pristine(tmp_path_factory, root, alf_root, model_cache) -> Path:
    """The finished tiny project (read only: copy it with `project`)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp("tiny") / "proj", root, alf_root, model_cache)
    shared = tmp_path_factory.getbasetemp().parent  # one per run, common to its workers
    dest = shared / "tiny" / "proj"
    with FileLock(shared / "tiny.lock"):
        if not (shared / "tiny" / "built").exists():
            shutil.rmtree(shared / "tiny", ignore_errors=True)
            build(dest, root, alf_root, model_cache)
            (shared / "tiny" / "built").touch()
    return dest


@pytest.fixture
def project(pristine, tmp_path) -> Path:
    """This test's own copy of the finished tiny project."""
    return copy_project(pristine, tmp_path / "proj")
