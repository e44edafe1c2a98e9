"""ExpeL's in-context examples: the successful trajectories most similar to a task.

ExpeL (Zhao et al. 2024) shows, besides its insights, the top-k successes whose
task is most similar to the current one. Here:

* the store (`example_store`) is derived deterministically from DVC outputs that
  already exist: the reference successes of train games (data/references.jsonl,
  split train: the rollout and warm-start games, never an eval game) plus the
  agent's own wins up to iteration i (data/iter_i/wins.jsonl). Only real wins
  (won with the full reward) count; of several wins with the same goal the
  shortest is kept (ties: trajectory id).
* similarity is the cosine similarity of the goal sentences' all-MiniLM-L6-v2
  vectors, kept in the LanceDB index of memory/retrieve.py (keyed by text, so a
  goal is embedded once per index); `nearest` ranks by those distances (ties:
  fewer actions, then trajectory id).
* an example is rendered compactly (`render_example`): its goal and its actions,
  the first `max_actions` of them, separated by "; ".
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from jerp.memory.base import really_won
from jerp.records import Trajectory

STORE_SPLIT = "train"  # examples come from train games only: an eval game never shows itself


def example_store(trajs: Iterable[Trajectory]) -> list[Trajectory]:
    """The successes examples are drawn from: real wins on train games, the shortest per
    goal (see the module docstring), sorted by trajectory id."""
    best: dict[str, Trajectory] = {}
    for t in trajs:
        if t.split != STORE_SPLIT or not really_won(t):
            continue
        key = " ".join(t.goal.lower().split())
        old = best.get(key)
        if old is None or (len(t.actions), t.traj_id) < (len(old.actions), old.traj_id):
            best[key] = t
    return sorted(best.values(), key=lambda t: t.traj_id)


def nearest(store: list[Trajectory], distance: dict[str, float], k: int) -> list[Trajectory]:
    """The k successes whose goal is closest (`distance`: goal text -> cosine distance;
    a goal without one counts as farthest); ties: fewer actions, then trajectory id."""
    ranked = sorted(store, key=lambda t: (round(distance.get(t.goal, 2.0), 6),
                                          len(t.actions), t.traj_id))
    return ranked[: max(k, 0)]


def goal_distances(goals: list[str], query: str, index_dir: str | Path) -> dict[str, float]:
    """Cosine distance from `query` to each goal, through the shared LanceDB index."""
    from jerp.memory.retrieve import RuleIndex, _goal_vector, text_key

    if not goals:
        return {}
    index = RuleIndex(index_dir)
    index.ensure(goals)
    by_key = index.distances(_goal_vector(query), sorted({text_key(g) for g in goals}))
    return {g: by_key[text_key(g)] for g in goals if text_key(g) in by_key}


def similar_successes(store: list[Trajectory], goal: str, k: int,
                      index_dir: str | Path) -> list[Trajectory]:
    """The k successes of `store` most similar to `goal` (embedding retrieval)."""
    if k <= 0 or not store:
        return []
    return nearest(store, goal_distances(sorted({t.goal for t in store}), goal, index_dir), k)


def render_example(t: Trajectory, max_actions: int) -> str:
    """One example as the prompt shows it: the goal, then its first actions."""
    acts = t.actions[:max_actions]
    more = f" ... ({len(t.actions) - max_actions} more)" if len(t.actions) > max_actions else ""
    return f"Goal: {t.goal.strip()}\nActions: " + "; ".join(acts) + more
