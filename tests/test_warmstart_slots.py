"""The slotted warm start (H2R methods; jerp.methods.warmstart_settings): it learns the
prompts H2R's executor shows (each step's current subgoal in the memory slot), on a real
walkthrough."""

from __future__ import annotations

import pytest

from jerp.config import parse_params
from jerp.envs.alfworld import AlfWorldEnv, list_tasks
from jerp.envs.registry import action_abstraction
from jerp.memory.segment import subgoal_sequence
from jerp.policy.experience import success_items
from jerp.policy.train import pack_items
from jerp.replay import replay_reference
from jerp.stages.warmstart import with_subgoal_slots


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
