"""Real ALFWorld states for model tests: (observation, walkthrough action) pairs."""

from __future__ import annotations

from pathlib import Path

from jerp.envs.alfworld import AlfWorldEnv, list_tasks
from jerp.envs.base import Observation


def walkthrough_states(alf_root: Path, n: int) -> list[tuple[Observation, str]]:
    """The first `n` states of the first valid_unseen walkthrough with at least `n` steps,
    played on the real engine."""
    env = AlfWorldEnv(alf_root, max_steps=50)
    try:
        for task in list_tasks(alf_root, "eval_out"):
            walk = env.reference(task)
            if len(walk) >= n:
                break
        ob = env.reset(task)
        states = []
        for a in walk[:n]:
            states.append((ob, a))
            ob = env.step(a).observation
        return states
    finally:
        env.close()
