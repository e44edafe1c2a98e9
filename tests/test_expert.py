"""ALFWorld's searching expert, driven from task folder names, on the real engine."""

import pytest

from jerp.envs.alfworld import TASK_TYPES, AlfWorldEnv, list_tasks
from jerp.envs.alfworld_expert import TaskFolderError, TaskParams, task_params
from jerp.metrics import agreement_by_kind, decision_kind, demo_stats, expert_agreement
from jerp.records import StepRecord, Trajectory
from jerp.replay import play_expert, replay_reference

# One valid_unseen game per type that the expert wins. The pick_two game needs both
# changes to upstream: `move` tracked as `put` (or it keeps "holding" the first key
# chain) and the stand-in for a shelf that shares its spot (`examine shelf 3`).
WON = {
    "look_at_obj_in_light":
        "look_at_obj_in_light-Bowl-None-DeskLamp-308/trial_T20190907_133953_562557",
    "pick_and_place_simple":
        "pick_and_place_simple-Mug-None-Desk-308/trial_T20190909_203041_433487",
    "pick_clean_then_place_in_recep":
        "pick_clean_then_place_in_recep-Pan-None-CounterTop-10/trial_T20190908_032543_712058",
    "pick_cool_then_place_in_recep":
        "pick_cool_then_place_in_recep-Potato-None-Microwave-10/trial_T20190907_033228_194678",
    "pick_heat_then_place_in_recep":
        "pick_heat_then_place_in_recep-Apple-None-GarbageCan-10/trial_T20190908_145143_820541",
    "pick_two_obj_and_place":
        "pick_two_obj_and_place-KeyChain-None-Safe-219/trial_T20190909_012027_782483",
}


def test_task_params_from_the_folder_name_for_every_type():
    cases = {
        "look_at_obj_in_light-AlarmClock-None-DeskLamp-301/trial_T1":
            TaskParams("look_at_obj_in_light", "alarmclock", "", "desklamp", ""),
        "valid_unseen/pick_and_place_simple-Pencil-None-Shelf-308/trial_T2":
            TaskParams("pick_and_place_simple", "pencil", "shelf", "", ""),
        "pick_clean_then_place_in_recep-Cloth-None-CounterTop-424":
            TaskParams("pick_clean_then_place_in_recep", "cloth", "countertop", "", ""),
        "pick_cool_then_place_in_recep-AppleSliced-None-DiningTable-27":
            TaskParams("pick_cool_then_place_in_recep", "apple", "diningtable", "", "",
                       object_sliced=True),
        "pick_heat_then_place_in_recep-Potato-None-SinkBasin-14":
            TaskParams("pick_heat_then_place_in_recep", "potato", "sinkbasin", "", ""),
        "pick_two_obj_and_place-Pen-Mug-Desk-309":
            TaskParams("pick_two_obj_and_place", "pen", "desk", "", "mug"),
    }
    assert {p.task_type for p in cases.values()} == set(TASK_TYPES)
    for folder, want in cases.items():
        assert task_params(folder) == want, folder
    assert task_params("a/b/pick_two_obj_and_place-CD-None-Safe-308/trial").as_expert_dict() == {
        "task_type": "pick_two_obj_and_place", "object_target": "cd", "parent_target": "safe",
        "toggle_target": "", "mrecep_target": "", "object_sliced": False}


@pytest.mark.parametrize("bad, says", [
    ("trial_T2019", "no task folder"),
    ("pick_and_place_simple-Pencil-Shelf-308", "5 fields"),
    ("pick_and_fly-Pencil-None-Shelf-308", "unknown task type"),
])
def test_task_params_rejects_a_folder_it_cannot_read(bad, says):
    with pytest.raises(TaskFolderError, match=says):
        task_params(bad)


@pytest.fixture(scope="module")
def env(alf_root):
    e = AlfWorldEnv(alf_root, max_steps=100)
    yield e
    e.close()


@pytest.fixture(scope="module")
def games(alf_root):
    by_id = {t.task_id: t for t in list_tasks(alf_root, "eval_out")}
    return {tt: by_id[f"valid_unseen/{game}"] for tt, game in WON.items()}


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_expert_trajectory_replays_to_a_win(env, games, task_type):
    """The expert wins, and its actions replayed from outside win again: the labels a
    fresh expert gives along the replay are the actions themselves (DAgger labels equal
    the expert's own actions when the policy follows the expert)."""
    task = games[task_type]
    demo = play_expert(env, task, 100)
    assert demo.won and demo.reference_kind == "expert" and demo.source == "reference"
    assert all(s.expert == s.action and s.valid for s in demo.steps)
    again = replay_reference(env, task, demo.actions)
    assert again.won and again.n_steps == demo.n_steps
    assert [s.expert for s in again.steps] == demo.actions


def test_a_reference_is_the_same_bytes_each_time_it_is_played(env, games):
    """DVC keys the warm start on the hash of `references`' output: a demonstration played
    twice must serialize the same, or each re-run of that stage (a new seed's experiment)
    re-trains the warm start (a wall-time field once made it so)."""
    task = games["pick_and_place_simple"]
    first, second = (play_expert(env, task, 100).model_dump_json() for _ in range(2))
    assert first == second


def test_expert_labels_a_state_the_policy_reached_off_its_path(env, games):
    """A detour the expert would not take (another receptacle first): it keeps tracking,
    and following its labels from there still wins."""
    task = games["pick_heat_then_place_in_recep"]
    obs = env.reset(task)
    first = obs.expert
    detour = next(a for a in obs.admissible if a.startswith("go to") and a != first)
    res = env.step(detour)
    assert res.observation.expert is not None
    obs, won, n = res.observation, False, 1
    while obs.expert is not None and not won and n < 100:
        res = env.step(obs.expert)
        obs, won, n = res.observation, res.won, n + 1
    assert won


def test_the_step_limit_reaches_the_engine(alf_root, games):
    from jerp.config import Params
    from jerp.envs.registry import env_factory

    p = Params.model_validate({"env": {"max_steps": 3}})
    e = env_factory(p.env, alf_root)()
    try:
        assert e.max_steps == 3
        e.reset(games["pick_two_obj_and_place"])
        done = [e.step("look").done for _ in range(3)]
        assert done == [False, False, True]
    finally:
        e.close()


def _traj(actions, labels, kind=None, won=True, task_type="pick_and_place_simple"):
    steps = [StepRecord(observation="o", admissible_count=2, action=a, admissible=[a, "look"],
                        expert=x) for a, x in zip(actions, labels, strict=True)]
    return Trajectory(traj_id="t", task_id="g", env="alfworld", split="train",
                      task_type=task_type, goal="g", steps=steps, reward=float(won),
                      won=won, n_steps=len(steps), reference_kind=kind)


def test_expert_agreement_counts_labelled_decisions_only():
    t = _traj(["go to a", "take x", "look", "go to b"], ["go to a", "go to b", None, "go to b"])
    m = expert_agreement([t])
    assert m["expert_agreement"] == round(2 / 3, 4) and m["expert_labels"] == 3
    lo, hi = m["expert_agreement_ci"]
    assert 0 < lo < 2 / 3 < hi < 1
    assert expert_agreement([_traj(["look"], [None])]) == {}


def test_agreement_splits_by_the_kind_of_the_expert_action():
    """Counted by what the expert did, whatever the policy did instead: a `take` label
    answered with `go to b` counts against `take`."""
    t = _traj(["go to a", "go to c", "go to b", "open d", "look"],
              ["go to a", "go to b", "take x", "open d", None])
    w = _traj(["search[red shoes]", "click[b01]"], ["search[red shoes]", "click[b02]"])
    assert agreement_by_kind([t, t]) == {"go to": (2, 4), "open": (2, 2), "take": (0, 2)}
    assert agreement_by_kind([w]) == {"click": (0, 1), "search": (1, 1)}
    assert [decision_kind(a) for a in ("go to sink 1", "move cd 3 to safe 1", "goto")] == [
        "go to", "move", "goto"]


def test_demo_stats_count_fallbacks_per_type():
    refs = [_traj(["a"] * 4, [None] * 4, "expert"),
            _traj(["a"] * 6, [None] * 6, "walkthrough", task_type="pick_two_obj_and_place"),
            _traj(["a"] * 8, [None] * 8, "expert", task_type="pick_two_obj_and_place")]
    s = demo_stats(refs, "expert")
    assert s["fallbacks"] == 1 and s["by"] == {"expert": 2, "walkthrough": 1}
    assert s["expert_by_type"]["pick_two_obj_and_place"] == {
        "games": 2, "expert_won": 1, "expert_mean_steps": 8.0}
    assert "fallbacks" not in demo_stats(refs, "walkthrough")


def test_dagger_items_learn_the_label_at_the_states_the_policy_reached():
    from jerp.policy.experience import dagger_items

    t = _traj(["look", "go to a", "take x"], ["go to a", "go to a", "inventory"])
    for k, s in enumerate(t.steps):
        s.admissible, s.observation = ["look", "go to a", "take x"], f"o{k}"
    (item,) = dagger_items([t])
    # step 2's label is not among its candidates: no target there
    assert sorted(item.targets) == [0, 1]
    assert [item.targets[k].label for k in (0, 1)] == ["go to a", "go to a"]
    assert all(item.targets[k].ce for k in (0, 1))
    assert item.traj.actions == ["look", "go to a", "take x"]  # the history as played
    assert dagger_items([_traj(["look"], [None])]) == []


def test_dagger_items_learn_a_state_once_however_often_a_loop_revisits_it():
    from jerp.policy.experience import dagger_items

    loop = _traj(["look", "look", "look", "go to a"], ["go to a"] * 4)
    for s, obs in zip(loop.steps, ["o", "o", "o", "p"], strict=True):
        s.admissible, s.observation = ["look", "go to a"], obs
    again = loop.model_copy(deep=True)  # the group's second episode, same states
    other_game = loop.model_copy(deep=True, update={"task_id": "h"})
    items = dagger_items([loop, again, other_game])
    assert [(i.traj.task_id, sorted(i.targets)) for i in items] == [("g", [0, 3]),
                                                                     ("h", [0, 3])]
