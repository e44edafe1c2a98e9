"""The slotted warm start (H2R methods; jerp.methods.warmstart_settings): it learns the
prompts H2R's executor shows (each step's current subgoal in the memory slot), and with
policy.visited the places visited, on a real walkthrough."""

from __future__ import annotations

import pytest

from jerp.config import parse_params
from jerp.envs.alfworld import AlfWorldEnv, list_tasks
from jerp.envs.registry import action_abstraction
from jerp.memory.base import with_slots
from jerp.memory.segment import subgoal_sequence
from jerp.policy.experience import success_items
from jerp.policy.train import pack_items
from jerp.records import WarmstartSettings
from jerp.replay import replay_reference
from jerp.stages.warmstart import slot_memory


def with_subgoal_slots(p, refs, tasks, subgoal_slots=True):
    """The references as the warm start trains them (stages/warmstart.py)."""
    return with_slots(refs, slot_memory(p, WarmstartSettings(subgoal_slots=subgoal_slots)),
                      tasks)


@pytest.fixture(scope="module")
def walkthrough(alf_root):
    """A real pick-and-place walkthrough (task, trajectory), replayed on the engine."""
    env = AlfWorldEnv(alf_root, max_steps=50)
    try:
        task = next(t for t in list_tasks(alf_root, "train")
                    if t.task_type == "pick_and_place_simple")
        ref = replay_reference(env, task)
    finally:
        env.close()
    assert ref.won
    return task, ref


def test_each_step_shows_the_subgoal_the_walkthrough_is_working_on(walkthrough):
    task, ref = walkthrough
    p = parse_params({"rules": {"subgoal_budget": 100}})  # no moving on by step budget
    [slotted] = with_subgoal_slots(p, [ref], {task.task_id: task})
    actions = [s.action for s in ref.steps]
    realised = subgoal_sequence(actions, ref.goal, action_abstraction("alfworld"))
    assert len(realised) >= 2  # e.g. "find and take the X", "put the X in/on the Y"
    shown = [s.subgoal for s in slotted.steps]
    assert shown[0] == realised[0] and shown[-1] == realised[-1]
    assert list(dict.fromkeys(shown)) == realised  # in order, each until its milestone
    for s in slotted.steps:
        assert s.slot == f"Current subgoal: {s.subgoal}\n" and s.memories == []
    # Only the slot changed: same actions, observations and candidates.
    assert [s.model_dump(exclude={"subgoal", "memories", "slot"}) for s in slotted.steps] == [
        s.model_dump(exclude={"subgoal", "memories", "slot"}) for s in ref.steps]


def test_the_packed_training_prompts_carry_the_slot(walkthrough, policy_fp32):
    task, ref = walkthrough
    p = parse_params({})
    [slotted] = with_subgoal_slots(p, [ref], {task.task_id: task})
    tok = policy_fp32.tokenizer

    def texts(traj):
        return [tok.decode(w.tokens) for w in pack_items(policy_fp32, success_items([traj]), 3)]

    plain, with_slots = texts(ref), texts(slotted)
    assert not any("Current subgoal:" in t for t in plain)
    first = slotted.steps[0].subgoal
    assert any(f"Current subgoal: {first}" in t for t in with_slots)
    assert len(with_slots) > len(plain)  # a window splits where the subgoal changes


def test_each_step_shows_the_places_visited_before_it(walkthrough):
    """policy.visited: a step's slot lists the `go to` targets of the steps before it, in
    the order first reached; after H2R's subgoal line where there is one."""
    task, ref = walkthrough
    p = parse_params({"policy": {"visited": True}})
    [slotted] = with_subgoal_slots(p, [ref], {task.task_id: task}, subgoal_slots=False)
    gone: list[str] = []
    for s in slotted.steps:
        assert s.slot == ("Places visited: " + ", ".join(gone) + "\n" if gone else "")
        assert s.subgoal == "" and s.memories == []
        if s.action.startswith("go to ") and s.action[6:] not in gone:
            gone.append(s.action[6:])
    assert len(gone) >= 2  # a walkthrough goes to the object, then to where it goes
    [both] = with_subgoal_slots(p, [ref], {task.task_id: task})
    last = both.steps[-1]
    assert last.slot.startswith(f"Current subgoal: {last.subgoal}\n")
    assert last.slot.endswith(slotted.steps[-1].slot) and slotted.steps[-1].slot
    # Off (the default): no slot at all.
    assert slot_memory(parse_params({}), WarmstartSettings(subgoal_slots=False)) is None
