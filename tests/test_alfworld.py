"""The real ALFWorld engine behind the Env protocol."""

import pytest

from jerp.envs.alfworld import (
    TASK_TYPES,
    AlfWorldEnv,
    DataNotFoundError,
    GameFileError,
    list_tasks,
    resolve_data_root,
    sample_tasks,
)
from jerp.replay import replay_reference


@pytest.fixture(scope="module")
def env(alf_root):
    e = AlfWorldEnv(alf_root, max_steps=50)
    yield e
    e.close()


def test_splits_and_task_types(alf_root):
    unseen = list_tasks(alf_root, "eval_out")
    assert len(unseen) == 134
    assert {t.task_type for t in unseen} == set(TASK_TYPES)
    assert len(list_tasks(alf_root, "eval_in")) == 140


def test_sampling_is_per_type_and_seeded(alf_root):
    tasks = list_tasks(alf_root, "train")
    a = sample_tasks(tasks, 2, seed=3)
    assert a == sample_tasks(tasks, 2, seed=3)
    assert a != sample_tasks(tasks, 2, seed=4)
    assert sorted({t.task_type for t in a}) == sorted(TASK_TYPES) and len(a) == 12
    with pytest.raises(ValueError, match="unknown task types"):
        sample_tasks(tasks, 1, 0, ["pick_and_fly"])


def test_walkthrough_replays_to_a_win(env, alf_root):
    task = next(t for t in list_tasks(alf_root, "eval_out")
                if t.task_type == "pick_heat_then_place_in_recep")
    ob = env.reset(task)
    assert "heat" in ob.goal or "hot" in ob.goal
    assert ob.task_type == task.task_type and "look" in ob.admissible
    walk = env.reference(task)
    assert walk and any(a.startswith("heat ") for a in walk)
    traj = replay_reference(env, task)
    assert traj.won and traj.reward == 1.0 and traj.n_steps == len(walk)
    assert all(s.valid for s in traj.steps)  # every walkthrough command was admissible


def test_reset_moves_to_the_requested_game(env, alf_root):
    tasks = list_tasks(alf_root, "eval_in")[:2]
    goals = [env.reset(t).goal for t in tasks]
    assert env.reset(tasks[0]).goal == goals[0]


def test_invalid_action_changes_nothing(env, alf_root):
    task = list_tasks(alf_root, "eval_in")[0]
    env.reset(task)
    res = env.step("fly to the moon")
    assert res.observation.text == "Nothing happens." and not res.won and res.reward == 0


def test_missing_data_dir_says_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        resolve_data_root(str(tmp_path / "nowhere"), {}, tmp_path / "proj")
    assert str(tmp_path / "nowhere") in str(e.value) and "ALFWORLD_DATA" in str(e.value)


def test_broken_game_file_is_named(env, alf_root, tmp_path):
    """A truncated game file: reset and reference both name it (the engine's JSON error
    alone does not), and the env still plays the next good game."""
    good = sample_tasks(list_tasks(alf_root, "train"), 1, seed=0)[0]
    trial = tmp_path / good.source
    trial.parent.mkdir(parents=True)
    for f in (alf_root / good.source).parent.iterdir():
        (trial.parent / f.name).symlink_to(f)
    text = (alf_root / good.source).read_text()
    trial.unlink()
    trial.write_text(text[: len(text) // 2])
    broken = AlfWorldEnv(tmp_path, max_steps=5)
    try:
        with pytest.raises(GameFileError, match=f"{trial}: not a playable ALFWorld game "
                           r"\(JSONDecodeError"):
            broken.reset(good)
        with pytest.raises(GameFileError, match=f"{trial}: no readable walkthrough"):
            broken.reference(good)
    finally:
        broken.close()
    assert env.reset(good).admissible
