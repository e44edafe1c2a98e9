"""The H2R executor's per-step memory: which subgoal the next decision works on, and
the execution memories shown for it.

`SubgoalMemory` is a `memory.base.StepMemory`: called before each
decision with (task, goal, steps so far, the episode's plan), it follows that plan (made
once at the episode's start by memory/planner.py; without one, `H2RMemory.plan`: the
most similar remembered plan restated for this goal, else the environment's default
plan for the task type), finds the current subgoal (`hierarchy.current_subgoal`:
moves on when the episode closes a subgoal, or after `budget` steps on one), and
returns the slot with that subgoal and its execution memories. It holds plain data
only, so it pickles to the worker processes that play episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from jerp.envs.base import Task
from jerp.envs.registry import action_abstraction
from jerp.memory.base import MemorySlot, Query
from jerp.memory.hierarchy import H2RMemory, current_subgoal
from jerp.records import RuleSnapshot, StepRecord


@dataclass(frozen=True)
class SubgoalMemory:
    """The executor's per-step memory (`base.StepMemory`): plain data, so it pickles to
    worker processes. Called with (task, goal, steps so far), it returns the slot of
    the next decision: the current subgoal and the execution memories for it."""

    pool: RuleSnapshot
    env: str  # whose action abstraction segments the episode
    k: int  # execution memories shown per step
    budget: int  # steps a subgoal may take before the executor moves on

    def __call__(self, task: Task, goal: str, steps: list[StepRecord],
                 plan: list[str] | None = None) -> MemorySlot:
        ax = action_abstraction(self.env)
        memory = H2RMemory(self.pool)
        if plan is None:
            plan = memory.plan(Query(task.task_type, goal), ax)
        pos = current_subgoal(plan, [s.action for s in steps], goal, ax, self.budget)
        subgoal = plan[pos] if pos < len(plan) else ""
        shown = memory.execution(subgoal, self.k) if subgoal and self.k else []
        return MemorySlot(subgoal=subgoal, shown=shown)
