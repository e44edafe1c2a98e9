"""Queued DVC experiments run in a copy under <project>/.dvc/tmp/exps/: their run state
and the data beside the project must resolve to the user's project."""

from pathlib import Path

from jerp.runtime import origin


def test_origin_of_an_experiment_workspace_is_the_project(tmp_path: Path):
    ws = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    ws.mkdir(parents=True)
    assert origin(ws) == (tmp_path / "proj").resolve()
    assert origin(tmp_path / "proj") == tmp_path / "proj"
    assert origin(tmp_path / "a" / ".dvc" / "cache") == tmp_path / "a" / ".dvc" / "cache"
