"""The environment protocol every text world implements.

Rollouts, reflection and evaluation only ever see these types, so ALFWorld and
WebShop are interchangeable for the rest of the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Task:
    """One playable game/goal. `task_id` is stable across runs and machines."""

    task_id: str
    env: str  # "alfworld" | "webshop"
    split: str  # "train" | "eval_in" | "eval_out"
    task_type: str
    source: str  # where the env finds it: a game file relative to the data root, a goal index


@dataclass
class Observation:
    """What the agent sees before choosing an action."""

    text: str
    admissible: list[str]
    goal: str
    task_type: str
    # The expert's action at this state (ALFWorld's searching expert, WebShop's scripted
    # shopper; each follows whatever actions were played: DAgger labels); None where
    # there is no expert, it has given up or the episode is over. For measuring and for
    # training on train games only.
    expert: str | None = None


@dataclass
class StepResult:
    observation: Observation
    reward: float
    done: bool
    won: bool
    info: dict = field(default_factory=dict)


class Env(Protocol):
    """A text world that plays one task at a time and can be reset to the next."""

    name: str

    def reset(self, task: Task) -> Observation: ...

    def step(self, action: str) -> StepResult: ...

    def reference(self, task: Task) -> list[str]:
        """A reference successful action sequence (walkthrough / scripted purchase)."""
        ...

    def close(self) -> None: ...
