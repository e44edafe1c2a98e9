"""Hindsight segmentation (H2R): cut a trajectory into per-subgoal segments.

A subgoal closes at each milestone of the environment's action abstraction
(`envs/actions.py`: the state-changing actions a success cannot skip) and is named
by it in plain language ("find and take the mug", "cool the mug with the fridge",
"put the mug in/on the shelf"; WebShop: "search for the product", "open a matching
product", "choose the options", "buy"). Rules, in the order they apply:

- a segment holds the actions after the previous milestone up to and including its
  own milestone (going there, opening it, looking around belong to the subgoal);
- a milestone that closes the same subgoal as the segment just closed extends that
  segment instead (WebShop's option clicks are one "choose the options"; an
  ALFWorld action repeated after a no-op is one subgoal, not two);
- actions after the last milestone form one open segment (`done=False`), named
  after nothing yet ("").

The same function serves a finished trajectory (hindsight reflection) and a partial
one (the executor asks which subgoal it is in: `closed_count`).
"""

from __future__ import annotations

from dataclasses import dataclass

from jerp.envs.actions import ActionAbstraction


@dataclass(frozen=True)
class Segment:
    """Steps [start, end) of a trajectory, working towards one subgoal."""

    name: str  # "" while the segment is open
    start: int
    end: int
    actions: tuple[str, ...]
    done: bool  # closed by its milestone


def segment(actions: list[str], goal: str, abstraction: ActionAbstraction) -> list[Segment]:
    """The trajectory's segments, in order (module docstring); [] for no actions."""
    segments: list[Segment] = []
    start = 0
    for i, act in enumerate(abstraction.abstract(actions, goal)):
        if not act.is_milestone:
            continue
        name = abstraction.subgoal_name(act, goal)
        last = segments[-1] if segments else None
        if last is not None and last.name == name:
            segments[-1] = Segment(name, last.start, i + 1, tuple(actions[last.start:i + 1]),
                                   True)
        else:
            segments.append(Segment(name, start, i + 1, tuple(actions[start:i + 1]), True))
        start = i + 1
    if start < len(actions):
        segments.append(Segment("", start, len(actions), tuple(actions[start:]), False))
    return segments


def closed(segments: list[Segment]) -> list[Segment]:
    """The segments whose subgoal was reached."""
    return [s for s in segments if s.done]


def closed_count(actions: list[str], goal: str, abstraction: ActionAbstraction) -> int:
    """How many subgoals a (partial) trajectory has closed so far."""
    return len(closed(segment(actions, goal, abstraction)))


def subgoal_sequence(actions: list[str], goal: str, abstraction: ActionAbstraction) -> list[str]:
    """The names of the closed subgoals, in order: a trajectory's realised plan."""
    return [s.name for s in closed(segment(actions, goal, abstraction))]
