"""Atomic writers: a failure leaves the previous file intact and no temp files behind."""

import pytest

from jerp.records import (
    CorruptInputError,
    RuleSnapshot,
    StepRecord,
    Trajectory,
    atomic_open,
    read_snapshot,
    read_tasks,
    read_trajectories,
    write_snapshot,
    write_trajectories,
)


def _traj(i: int) -> Trajectory:
    return Trajectory(traj_id=f"t{i}", task_id="x", env="alfworld", split="train",
                      task_type="pick", goal="g", reward=1.0, won=True, n_steps=1,
                      steps=[StepRecord(observation="o", admissible_count=2, action="look")])


def test_roundtrip(tmp_path):
    write_trajectories(tmp_path / "t.jsonl", [_traj(1), _traj(2)])
    back = read_trajectories(tmp_path / "t.jsonl")
    assert [t.traj_id for t in back] == ["t1", "t2"] and back[0].actions == ["look"]


def test_failed_write_keeps_previous_output(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fh:
            fh.write("half")
            raise RuntimeError("stage crashed")
    assert path.read_text() == "old"
    assert list(tmp_path.iterdir()) == [path]


def test_snapshot_is_read_only(tmp_path):
    path = tmp_path / "rules.json"
    write_snapshot(path, RuleSnapshot(iteration=1, capacity=5, rules=[]))
    assert read_snapshot(path).iteration == 1
    assert not path.stat().st_mode & 0o222  # no write bits (root could still write)


def test_bad_line_is_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"traj_id": 1}\n')
    with pytest.raises(ValueError, match=r"t\.jsonl:1"):
        read_trajectories(path)


def test_truncated_trajectory_file_names_file_line_and_cut(tmp_path):
    path = tmp_path / "rollouts.jsonl"
    write_trajectories(path, [_traj(1), _traj(2)])
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # cut inside the second record
    with pytest.raises(CorruptInputError, match=r"rollouts\.jsonl:2: not a valid Trajectory "
                       r"\(truncated\?\)"):
        read_trajectories(path)


def test_hand_edited_snapshot_names_the_file_and_the_json_error(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text('{"iteration": 1, "capacity": 5, "rules": [,]}\n')
    with pytest.raises(CorruptInputError, match=r"rules\.json: not valid JSON \(Expecting value: "
                       r"line 1 column 43"):
        read_snapshot(path)
    path.write_text('{"iteration": "one", "capacity": 5, "rules": []}\n')
    with pytest.raises(CorruptInputError, match=r"rules\.json: not a valid RuleSnapshot"):
        read_snapshot(path)
    path.write_bytes(b'{"env": "\xff"}')
    with pytest.raises(CorruptInputError, match=r"rules\.json: not valid JSON"):
        read_tasks(path)
