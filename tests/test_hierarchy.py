"""H2R's two-level memory: separate queries per level, revision through the pool, and
the executor's subgoal switching on a real walkthrough fed step by step."""

from __future__ import annotations

import pytest

from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS
from jerp.envs.base import Task
from jerp.memory.base import Query
from jerp.memory.executor import SubgoalMemory
from jerp.memory.hierarchy import (
    H2RMemory,
    current_subgoal,
    parse_plan,
    plan_text,
)
from jerp.records import Proposal, Rule, RuleSnapshot, StepRecord

COOL = "pick_cool_then_place_in_recep"
HEAT = "pick_heat_then_place_in_recep"


def rule(rid: str, text: str, scope: str, level: str, score: int = 2) -> Rule:
    return Rule(id=rid, text=text, score=score, scope=scope, level=level, created=0, updated=0)


PLAN_MUG = plan_text("Your task is to: put a cool mug in shelf.", [
    "find and take the mug", "cool the mug with the fridge", "put the mug in/on the shelf"])
PLAN_TOMATO = plan_text("cool some tomato and put it in microwave.", [
    "find and take the tomato", "cool the tomato with the fridge",
    "put the tomato in/on the microwave"])
POOL = RuleSnapshot(iteration=1, capacity=20, next_id=9, rules=[
    rule("R1", "Look in the fridge first.", "general", "rule", 9),
    rule("R2", PLAN_TOMATO, COOL, "planning", 5),
    rule("R3", PLAN_MUG, COOL, "planning", 2),
    rule("R4", "Cool the object before you put it away.", COOL, "planning", 3),
    rule("R5", plan_text("heat some egg and put it in countertop.", ["a", "b"]), HEAT,
         "planning", 9),
    rule("R6", "To cool the apple with the fridge: go to a fridge, then cool it.",
         "cool the apple with the fridge", "execution", 2),
    rule("R7", "To put the mug in/on the shelf: go to a shelf, then put it.",
         "put the mug in/on the shelf", "execution", 2),
    rule("R8", "To heat the mug with the microwave: go to a microwave.",
         "heat the mug with the microwave", "execution", 7),
])


def test_plan_text_round_trip() -> None:
    assert PLAN_MUG == ("Plan for put a cool mug in shelf: 1. find and take the mug "
                        "2. cool the mug with the fridge 3. put the mug in/on the shelf")
    goal, steps = parse_plan(PLAN_MUG)
    assert goal == "put a cool mug in shelf" and len(steps) == 3
    assert parse_plan("Cool the object before you put it away.") is None


def test_levels_use_their_own_query_and_level() -> None:
    m = H2RMemory(POOL)
    planning = m.retrieve(Query(COOL, "put a cool mug in cabinet."), 5)
    # the most similar task's plan first, then insights by score, then the other plans
    assert [r.id for r in planning] == ["R3", "R4", "R2"]
    assert [r.id for r in m.retrieve(Query(COOL, "cool some tomato and put it in shelf."), 1)
            ] == ["R2"]
    # the subgoal is the query: same action word only, most similar subgoal first
    assert [r.id for r in m.execution("put the apple in/on the shelf", 3)] == ["R7"]
    assert [r.id for r in m.execution("cool the mug with the fridge", 3)] == ["R6"]
    assert m.execution("find and take the mug", 3) == []
    assert m.execution("", 3) == []
    # a flat rule is never shown by the hierarchy, nor a hierarchy memory by the other level
    ids_p = {r.id for r in m.retrieve(Query(COOL, "x"), 10)}
    ids_e = {r.id for s in ("cool x", "put x", "heat x") for r in m.execution(s, 10)}
    assert ids_p == {"R2", "R3", "R4"} and ids_e == {"R6", "R7", "R8"}


def test_revision_is_the_pools_at_each_level() -> None:
    m = H2RMemory(POOL)
    props = [Proposal(op="ADD", text=PLAN_MUG, scope=COOL, level="planning"),
             Proposal(op="ADD", text="Take the mug.", scope="find and take the mug",
                      level="execution"),
             Proposal(op="ADD", text=PLAN_MUG, scope=COOL, level="execution"),
             Proposal(op="DOWNVOTE", rule_ids=["R8"])]
    after, applied = m.revise(props, 2, 20)
    snap = after.snapshot()
    assert all(a.accepted for a in applied)
    by_id = {r.id: r for r in snap.rules}
    assert by_id["R3"].score == 3  # same text, same level and scope: an upvote
    assert (by_id["R9"].level, by_id["R9"].scope) == ("execution", "find and take the mug")
    assert (by_id["R10"].level, by_id["R10"].text) == ("execution", PLAN_MUG)  # other level
    assert by_id["R8"].score == 6
    d = after.diff(m)
    assert d.added and {r.id for r in d.added} == {"R9", "R10"}


def test_plan_carried_over_or_default() -> None:
    m = H2RMemory(POOL)
    assert m.plan(Query(COOL, "put a cool apple in countertop."), ALFWORLD_ACTIONS) == [
        "find and take the apple", "cool the apple with the fridge",
        "put the apple in/on the countertop"]
    empty = H2RMemory(RuleSnapshot.empty(5))
    assert empty.plan(Query(HEAT, "heat some egg and put it in countertop."),
                      ALFWORLD_ACTIONS) == [
        "find and take the egg", "heat the egg with the microwave",
        "put the egg in/on the countertop"]


def test_budget_moves_on_but_never_past_the_last_subgoal() -> None:
    plan = ["find and take the egg", "heat the egg with the microwave",
            "put the egg in/on the countertop"]
    goal = "heat some egg and put it in countertop."
    look = ["look"] * 3
    pos = [current_subgoal(plan, look[:n], goal, ALFWORLD_ACTIONS, 2) for n in range(4)]
    assert pos == [0, 0, 1, 1]
    assert current_subgoal(plan, ["look"] * 9, goal, ALFWORLD_ACTIONS, 2) == 2
    # out of order: heating first closes subgoal 2 and skips the take
    assert current_subgoal(plan, ["heat egg 1 with microwave 1"], goal, ALFWORLD_ACTIONS,
                           10) == 2


@pytest.fixture(scope="module")
def cool_ref(alf_root):
    from jerp.envs.alfworld import AlfWorldEnv, list_tasks
    from jerp.replay import replay_reference

    env = AlfWorldEnv(alf_root, max_steps=50)
    task = next(t for t in list_tasks(alf_root, "train") if t.task_type == COOL)
    try:
        return task, replay_reference(env, task)
    finally:
        env.close()


def test_executor_switches_subgoals_on_a_real_walkthrough(cool_ref) -> None:
    task, ref = cool_ref
    assert ref.won and ref.goal.endswith("put a cool apple in countertop.")
    step_memory = SubgoalMemory(POOL, "alfworld", k=2, budget=20)
    slots = [step_memory(task, ref.goal, ref.steps[:n]) for n in range(len(ref.steps) + 1)]
    # go to, take | go to fridge, cool | go to, move | (done)
    assert [s.subgoal for s in slots] == [
        "find and take the apple", "find and take the apple",
        "cool the apple with the fridge", "cool the apple with the fridge",
        "put the apple in/on the countertop", "put the apple in/on the countertop", ""]
    assert [[r.id for r in s.shown] for s in slots] == [[], [], ["R6"], ["R6"], ["R7"],
                                                        ["R7"], []]
    import pickle

    assert pickle.loads(pickle.dumps(step_memory)) == step_memory  # sent to workers


def test_executor_budget_on_a_stalled_episode() -> None:
    task = Task(task_id="t", env="alfworld", split="train", task_type=HEAT, source="")
    steps = [StepRecord(observation="", admissible_count=0, action="look")] * 4
    memory = SubgoalMemory(POOL, "alfworld", k=1, budget=3)
    goal = "heat some mug and put it in countertop."
    # R5's plan is the only HEAT plan ("a", "b"): carried over verbatim
    assert [memory(task, goal, steps[:n]).subgoal for n in range(5)] == ["a", "a", "a", "b", "b"]
