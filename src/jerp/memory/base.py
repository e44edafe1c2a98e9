"""The memory interface every method's experience store implements.

A memory is an immutable value: `revise` returns a new one (the old one is the
previous iteration's snapshot, still on disk), `retrieve` picks what an episode is
shown for a query, `snapshot` is the on-disk record (records.RuleSnapshot, written
once per iteration), and `diff` says what changed since another memory. The flat
rule pool (`memory/flat.py`) implements it; H2R's planning/execution hierarchy is
meant to implement it too, so the stages call this interface, not the pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jerp.envs.base import Task
from jerp.memory.diff import SnapshotDiff
from jerp.records import (
    PlanSource,
    Proposal,
    RuleShown,
    RuleSnapshot,
    StepRecord,
    Trajectory,
)


def really_won(t: Trajectory) -> bool:
    """A success worth imitating: won, with the full reward (not a partial purchase)."""
    return t.won and t.reward >= 1.0 and bool(t.actions)


def render_slot(subgoal: str, memories: list[str], visited: tuple[str, ...] = ()) -> str:
    """The memory slot's text: the current subgoal and the execution memories shown for
    it, each on its own line(s), then the places visited (memory/visited.py); "" when
    there is none of them (the prompt then has no slot). Ends with a newline so the
    history's first "Observation:" starts a line."""
    text = f"Current subgoal: {subgoal}\n" if subgoal else ""
    if memories:
        text += "Useful experience:\n" + "".join(f"- {m}\n" for m in memories)
    if visited:
        text += "Places visited: " + ", ".join(visited) + "\n"
    return text


@dataclass(frozen=True)
class MemorySlot:
    """What the per-step memory slot shows for the next decision (plain data: memory
    builds it, the rollout renders it into the prompt)."""

    subgoal: str  # "" = none
    shown: list[RuleShown]  # execution memories shown at this step
    visited: tuple[str, ...] = ()  # places the episode has been (policy.visited)

    @property
    def text(self) -> str:
        """The slot as the prompt shows it (render_slot)."""
        return render_slot(self.subgoal, [r.text for r in self.shown], self.visited)


# (task, goal, steps so far, the episode's plan or None) -> the slot for the next
# decision. Jobs carry it to worker processes, so it must pickle (a module-level class or
# function, plain data inside).
StepMemory = Callable[[Task, str, list[StepRecord], list[str] | None], MemorySlot]


def with_slots(trajs: list[Trajectory], memory: StepMemory, tasks: dict[str, Task]
               ) -> list[Trajectory]:
    """Each step with the slot `memory` shows before it (its subgoal, memories shown and
    text), as if the trajectory had been played with that memory: so a reference trains
    the prompt the policy acts with."""
    out = []
    for r in trajs:
        steps = []
        for t, s in enumerate(r.steps):
            m = memory(tasks[r.task_id], r.goal, r.steps[:t], None)
            steps.append(s.model_copy(update={
                "subgoal": m.subgoal, "memories": [x.id for x in m.shown], "slot": m.text}))
        out.append(r.model_copy(update={"steps": steps}))
    return out


@dataclass(frozen=True)
class Plan:
    """An episode's subgoal plan and who wrote it (records.PlanSource)."""

    steps: list[str]
    source: PlanSource


# (task, goal) -> the episode's plan, made once at its start (memory/planner.py).
Planner = Callable[[Task, str], Plan]


@dataclass(frozen=True)
class Query:
    """What an episode looks memory up with: its task type and goal sentence."""

    task_type: str
    goal: str


class Memory(Protocol):
    """Versioned experience outside the model (see the module docstring)."""

    def revise(self, proposals: list[Proposal], iteration: int,
               capacity: int) -> tuple[Memory, list[Proposal]]:
        """A new memory with the proposals applied, and each proposal marked applied or
        rejected (with the reason)."""
        ...

    def retrieve(self, query: Query, k: int) -> list[RuleShown]:
        """The at most `k` memories shown to an episode of `query`."""
        ...

    def snapshot(self) -> RuleSnapshot:
        """The immutable on-disk record of this memory."""
        ...

    def diff(self, before: Memory) -> SnapshotDiff:
        """What changed from `before` to this memory."""
        ...
