"""Where the episode has been: the places its `go to` commands reached, shown in the
per-step memory slot (policy.visited).

ALFWorld's searching expert remembers which receptacles it has checked and goes to the
next one it has not; a prompt with a 3-step history window does not show that, so the
expert's `go to` labels cannot be predicted from it (the loop's DAgger states kept a
candidate cross-entropy of 2.4-2.7 on quick). The slot shows the list instead, in the
order first reached, and is rebuilt from the steps so far: references, rollouts and
replays render it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jerp.envs.base import Task
from jerp.memory.base import MemorySlot, StepMemory
from jerp.records import StepRecord

GO_TO = "go to "


def visited_places(actions: list[str]) -> tuple[str, ...]:
    """The targets of the `go to` commands, each once, in the order first reached."""
    seen: dict[str, None] = {}
    for a in actions:
        if a.startswith(GO_TO):
            seen.setdefault(a[len(GO_TO):].strip(), None)
    return tuple(seen)


@dataclass(frozen=True)
class VisitedMemory:
    """A StepMemory: `inner`'s slot (H2R's executor; None: an empty one) with the places
    visited added. Plain data, so it pickles to worker processes."""

    inner: StepMemory | None = None

    def __call__(self, task: Task, goal: str, steps: list[StepRecord],
                 plan: list[str] | None = None) -> MemorySlot:
        m = self.inner(task, goal, steps, plan) if self.inner else MemorySlot("", [])
        return replace(m, visited=visited_places([s.action for s in steps]))


def executor_of(step_memory: StepMemory | None) -> StepMemory | None:
    """The memory under the places-visited layer (H2R's executor, or None)."""
    return step_memory.inner if isinstance(step_memory, VisitedMemory) else step_memory


def without_executor(step_memory: StepMemory | None) -> StepMemory | None:
    """The places-visited layer alone (None without one): the slot of a prompt that shows
    no experience, which still shows the policy where it has been."""
    return VisitedMemory() if isinstance(step_memory, VisitedMemory) else None
