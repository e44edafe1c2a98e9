"""Corrupted inputs stop the stage that reads them, through its real flow: exit code
!= 0, a message naming the file and what is wrong, and every output as it was.
The stages report to the session's Prefect server (`server_env`): what a stage does
with a bad input does not depend on which server it reports to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from stage_project import run_stage, write_reflect_inputs

from jerp import paths
from jerp.records import read_tasks

pytestmark = pytest.mark.faults
ITER1 = ("--iteration", "1", "--prev", "0")


def _outputs(proj: Path) -> dict[str, bytes]:
    """Every file a stage may write (data/, metrics/, reports/), with its bytes."""
    return {str(p.relative_to(proj)): p.read_bytes() for d in ("data", "metrics", "reports")
            for p in sorted((proj / d).rglob("*")) if p.is_file()}


def _fails_naming(res, *needles: str) -> None:
    assert res.returncode != 0, res.stdout[-2000:]
    for n in needles:
        assert n in res.stderr, f"{n!r} not in stderr:\n{res.stderr[-3000:]}"


def test_truncated_trajectory_file(server_env, make_project, alf_root):
    proj = make_project()
    write_reflect_inputs(proj, alf_root)
    assert run_stage(proj, "reflect", *ITER1, env=server_env).returncode == 0
    rollouts = proj / paths.rollouts_file(1)
    rollouts.write_bytes(rollouts.read_bytes()[:-200])  # a copy cut short
    before = _outputs(proj)
    res = run_stage(proj, "reflect", *ITER1, env=server_env)
    _fails_naming(res, f"{rollouts}:2: not a valid Trajectory (truncated?)")
    assert _outputs(proj) == before


def test_rule_snapshot_edited_into_invalid_json(server_env, make_project, alf_root):
    proj = make_project()
    write_reflect_inputs(proj, alf_root)
    assert run_stage(proj, "reflect", *ITER1, env=server_env).returncode == 0
    assert run_stage(proj, "revise", *ITER1, env=server_env).returncode == 0
    pool = proj / paths.rules_file(0)
    os.chmod(pool, 0o644)  # snapshots are read-only: a hand edit starts with this
    pool.write_text(pool.read_text().replace('"rules": [', '"rules": [,'))
    before = _outputs(proj)
    for stage in ("revise", "reflect"):
        res = run_stage(proj, stage, *ITER1, env=server_env)
        _fails_naming(res, f"{pool}: not valid JSON (Expecting value")
        assert _outputs(proj) == before, stage


def test_adapter_folder_without_weights(server_env, make_project, model_cache):
    """A real LoRA adapter folder (fresh, from peft) whose weights file went missing."""
    from jerp.adapters import write_adapter
    from jerp.config import LoraParams
    from jerp.policy.model import load_policy
    from jerp.records import AdapterManifest

    proj = make_project()
    assert run_stage(proj, "prepare", env=server_env).returncode == 0
    adapter = proj / paths.adapter_dir(0)
    policy = load_policy("smollm2", model_cache, "float32", trainable=True, lora=LoraParams())
    write_adapter(adapter, policy, AdapterManifest(kind="lora", base="smollm2", iteration=0))
    (adapter / "adapter_model.safetensors").unlink()
    before = _outputs(proj)
    res = run_stage(proj, "evaluate", "--iteration", "0", env=server_env)
    _fails_naming(res, f"adapter folder {adapter} says kind 'lora' but has no weights")
    assert _outputs(proj) == before


def test_games_folder_with_a_broken_game_file(server_env, make_project, alf_root, tmp_path):
    """A copy of the games of one of the tiny preset's task types (links to the real files)
    in which one game file is then cut in half: references stops, naming it, and keeps
    its earlier output."""
    proj = make_project()
    types = yaml.safe_load((proj / "params.yaml").read_text())["env"]["task_types"][:1]
    games = tmp_path / "games"
    for split, n in (("train", 3), ("valid_seen", 1), ("valid_unseen", 2)):
        for t in types:
            for trial in sorted((alf_root / "json_2.1.1" / split).glob(f"{t}-*/*"))[:n]:
                dst = games / trial.relative_to(alf_root)
                dst.mkdir(parents=True)
                for f in trial.iterdir():
                    (dst / f.name).symlink_to(f)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["env"]["data_dir"] = str(games)
    params["env"]["task_types"] = types
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run_stage(proj, "prepare", env=server_env).returncode == 0
    ok = run_stage(proj, "references", env=server_env)
    assert ok.returncode == 0, ok.stderr[-3000:]
    broken = games / read_tasks(proj / paths.tasks_file()).tasks("train")[0].source
    text = broken.read_text()
    broken.unlink()
    broken.write_text(text[: len(text) // 2])
    before = _outputs(proj)
    res = run_stage(proj, "references", env=server_env)
    _fails_naming(res, str(broken), "JSONDecodeError")
    assert _outputs(proj) == before
