"""The LLM reflector's reference: a real success (full reward), the closest one."""

from __future__ import annotations

import pytest

from jerp.memory.base import really_won
from jerp.memory.reflect.llm import closest_reference, reflect_llm
from jerp.records import RuleSnapshot, StepRecord, Trajectory


def traj(tid: str, goal: str, reward: float, *, task_id: str = "t1", task_type: str = "fashion",
         n: int = 3, won: bool | None = None) -> Trajectory:
    return Trajectory(
        traj_id=tid, task_id=task_id, env="webshop", split="train", task_type=task_type,
        goal=goal, steps=[StepRecord(observation="", admissible_count=0, action=f"click[a{i}]")
                          for i in range(n)],
        reward=reward, won=reward >= 1.0 if won is None else won, n_steps=n)


FAILED = traj("f", "find me a black slim fit tee with size: large", 0.5, task_id="t9")


def test_really_won_needs_the_full_reward() -> None:
    assert really_won(traj("r", "g", 1.0))
    assert not really_won(traj("r", "g", 0.75))
    assert not really_won(traj("r", "g", 0.75, won=True))  # a mislabelled partial purchase
    assert not really_won(traj("r", "g", 1.0, n=0))


def test_closest_reference_prefers_same_task_then_similar_goal() -> None:
    partial_same_task = traj("p", FAILED.goal, 0.75, task_id="t9")
    similar = traj("s", "find me a black slim fit tee with size: small", 1.0, task_id="t2", n=5)
    unrelated = traj("u", "i need a waterproof hiking boot", 1.0, task_id="t3", n=2)
    other_type = traj("o", FAILED.goal, 1.0, task_id="t4", task_type="beauty")
    # the old rule (last reference of the type) would pick `unrelated`; the partial
    # purchase of the same task is no success
    refs = [partial_same_task, similar, other_type, unrelated]
    assert closest_reference(FAILED, refs) is similar
    same_task = traj("same", FAILED.goal, 1.0, task_id="t9", n=6)
    assert closest_reference(FAILED, [*refs, same_task]) is same_task
    assert closest_reference(FAILED, [partial_same_task, other_type]) is None
    assert closest_reference(FAILED, [FAILED]) is None  # never itself


def test_ties_go_to_the_shorter_then_the_smaller_id() -> None:
    a = traj("b", FAILED.goal, 1.0, task_id="t2", n=4)
    b = traj("a", FAILED.goal, 1.0, task_id="t3", n=4)
    c = traj("c", FAILED.goal, 1.0, task_id="t4", n=3)
    assert closest_reference(FAILED, [a, b]) is b
    assert closest_reference(FAILED, [a, b, c]) is c


def test_reflect_llm_refuses_a_reference_that_did_not_win() -> None:
    def never_called(prompt: str) -> str:  # FAKE model callable: must not be reached
        raise AssertionError("called")

    pool = RuleSnapshot(iteration=0, capacity=5, rules=[])
    with pytest.raises(ValueError, match=r"reference p did not win .*reward 0.75"):
        reflect_llm(never_called, FAILED, traj("p", FAILED.goal, 0.75), pool, max_ops=8,
                    max_chars=300)
