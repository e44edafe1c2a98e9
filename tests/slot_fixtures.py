"""TEST FIXTURE, not a memory: a scripted memory.base.StepMemory for the memory-slot tests.

It knows nothing about the task: it walks a fixed plan of subgoals, switching to
the next one after every `per_subgoal` actions, and shows each subgoal's fixed
memories. Module-level and plain data, so Jobs carrying it pickle to workers.
"""

from __future__ import annotations

from dataclasses import dataclass

from jerp.envs.base import Task
from jerp.memory.base import MemorySlot
from jerp.records import RuleShown, StepRecord

Plan = tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (subgoal, ((id, text), ...))

PLAN: Plan = (
    ("find the object", (("m1", "Look in the places the object is usually kept."),)),
    ("take the object", (("m2", "Go to the receptacle before taking from it."),
                         ("m3", "Take exactly the object the task names."))),
    ("place the object", (("m4", "Open a closed receptacle before putting in it."),)),
)


@dataclass(frozen=True)
class ScriptedStepMemory:
    """Subgoal plan[k] for steps [k * per_subgoal, (k + 1) * per_subgoal); the last
    subgoal stays once the plan runs out."""

    per_subgoal: int = 2
    plan: Plan = PLAN

    def __call__(self, task: Task, goal: str, steps: list[StepRecord],
                 plan: list[str] | None = None) -> MemorySlot:
        k = min(len(steps) // self.per_subgoal, len(self.plan) - 1)
        subgoal, memories = self.plan[k]
        return MemorySlot(subgoal, [RuleShown(id=i, text=t) for i, t in memories])

