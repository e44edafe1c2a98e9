"""Hindsight segmentation on real reference successes: the first train game of each
ALFWorld task type (walkthrough replayed on the engine) and a real WebShop purchase."""

from __future__ import annotations

import pytest

from jerp.envs.alfworld import TASK_TYPES, AlfWorldEnv, list_tasks
from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS
from jerp.envs.webshop.actions import WEBSHOP_ACTIONS
from jerp.memory.segment import Segment, closed_count, segment, subgoal_sequence
from jerp.replay import replay_reference

# What each walkthrough must segment into (read off the games' walkthroughs by hand).
EXPECTED = {
    "pick_and_place_simple": ("put some bowl on fridge.", [
        "find and take the bowl", "put the bowl in/on the fridge"]),
    "look_at_obj_in_light": ("look at alarmclock under the desklamp.", [
        "turn on the desklamp", "find and take the alarmclock"]),
    "pick_clean_then_place_in_recep": ("put a clean bowl in microwave.", [
        "find and take the bowl", "clean the bowl with the sinkbasin",
        "put the bowl in/on the microwave"]),
    "pick_heat_then_place_in_recep": ("heat some apple and put it in diningtable.", [
        "find and take the apple", "heat the apple with the microwave",
        "put the apple in/on the diningtable"]),
    "pick_cool_then_place_in_recep": ("put a cool apple in countertop.", [
        "find and take the apple", "cool the apple with the fridge",
        "put the apple in/on the countertop"]),
    "pick_two_obj_and_place": ("find two book and put them in desk.", [
        "find and take the book", "put the book in/on the desk",
        "find and take the book", "put the book in/on the desk"]),
}


@pytest.fixture(scope="module")
def alf_refs(alf_root):
    """One replayed walkthrough per task type (~45 s on a busy machine)."""
    env = AlfWorldEnv(alf_root, max_steps=50)
    tasks = list_tasks(alf_root, "train")
    try:
        return {tt: replay_reference(env, next(t for t in tasks if t.task_type == tt))
                for tt in TASK_TYPES}
    finally:
        env.close()


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_walkthrough_segments_into_its_subgoals(alf_refs, task_type) -> None:
    ref = alf_refs[task_type]
    goal, names = EXPECTED[task_type]
    assert ref.won and ref.goal.endswith(goal)
    segs = segment(ref.actions, ref.goal, ALFWORLD_ACTIONS)
    assert [s.name for s in segs] == names and all(s.done for s in segs)
    # the segments tile the trajectory, each ending at its milestone
    assert segs[0].start == 0 and segs[-1].end == len(ref.actions)
    assert all(a.end == b.start for a, b in zip(segs, segs[1:], strict=False))
    assert [a for s in segs for a in s.actions] == ref.actions
    # the default plan of the type asks for the same subgoals (examine: lamp first here)
    assert sorted(ALFWORLD_ACTIONS.default_plan(task_type, ref.goal)) == sorted(names)


def test_partial_trajectory_counts_closed_subgoals(alf_refs) -> None:
    ref = alf_refs["pick_cool_then_place_in_recep"]
    # go to, take | go to fridge, cool | go to, move
    counts = [closed_count(ref.actions[:n], ref.goal, ALFWORLD_ACTIONS)
              for n in range(len(ref.actions) + 1)]
    assert counts == [0, 0, 1, 1, 2, 2, 3]
    head = segment(ref.actions[:3], ref.goal, ALFWORLD_ACTIONS)
    assert head[-1] == Segment("", 2, 3, (ref.actions[2],), False)


def test_repeated_milestone_extends_its_segment() -> None:
    goal = "heat some egg and put it in countertop."
    actions = ["go to countertop 1", "take egg 1 from countertop 1", "go to microwave 1",
               "heat egg 1 with microwave 1", "look", "heat egg 1 with microwave 1"]
    segs = segment(actions, goal, ALFWORLD_ACTIONS)
    assert [(s.name, s.start, s.end) for s in segs] == [
        ("find and take the egg", 0, 2), ("heat the egg with the microwave", 2, 6)]
    assert segment([], goal, ALFWORLD_ACTIONS) == []


def test_plan_carries_over_to_another_goal() -> None:
    adapt = ALFWORLD_ACTIONS.adapt_subgoal
    assert adapt("put the apple in/on the countertop", "put a cool apple in countertop.",
                 "cool some mug and put it in shelf.") == "put the mug in/on the shelf"
    # object and receptacle swapped in one pass
    assert adapt("put the cup in/on the mug", "put some cup on mug.",
                 "put some mug on cup.") == "put the mug in/on the cup"


@pytest.fixture(scope="module")
def web_ref():
    """The first seed-0 train goal asking for two options, bought by its scripted reference."""
    from jerp.envs.webshop import WebShopEnv
    from jerp.envs.webshop import list_tasks as web_tasks

    env = WebShopEnv()
    task = next(t for t in web_tasks(None, "train", 0) if len(env.goal(t).goal_options) >= 2)
    return replay_reference(env, task)


def test_webshop_purchase_segments(web_ref) -> None:
    assert web_ref.won and web_ref.reward == 1.0
    names = ["search for the product", "open a matching product", "choose the options", "buy"]
    segs = segment(web_ref.actions, web_ref.goal, WEBSHOP_ACTIONS)
    assert [s.name for s in segs] == names
    options = segs[2]
    assert len(options.actions) == 2 and all(a.startswith("click[") for a in options.actions)
    assert subgoal_sequence(web_ref.actions, web_ref.goal, WEBSHOP_ACTIONS) == names
    assert WEBSHOP_ACTIONS.default_plan(web_ref.task_type, web_ref.goal) == names
    assert [closed_count(web_ref.actions[:n], web_ref.goal, WEBSHOP_ACTIONS)
            for n in range(len(web_ref.actions) + 1)] == [0, 1, 2, 3, 3, 4]
    assert WEBSHOP_ACTIONS.default_plan("x", "i need a lamp, and price lower than 20.00 "
                                             "dollars") == [names[0], names[1], names[3]]
