"""Evaluation metrics over trajectories: pure functions, JSON-ready output."""

from __future__ import annotations

from collections import defaultdict
from statistics import mean

from jerp.records import Trajectory


def summarize(trajs: list[Trajectory]) -> dict:
    """Success overall and per task type, score (mean reward x 100), steps, invalid rate."""
    if not trajs:
        return {"episodes": 0}
    by_type: dict[str, list[Trajectory]] = defaultdict(list)
    for t in trajs:
        by_type[t.task_type].append(t)
    steps = sum(t.n_steps for t in trajs)
    return {
        "episodes": len(trajs),
        "success": round(mean(t.won for t in trajs), 4),
        "score": round(100 * mean(t.reward for t in trajs), 2),
        "mean_steps": round(steps / len(trajs), 2),
        "invalid_action_rate": round(sum(t.invalid_actions for t in trajs) / max(steps, 1), 4),
        "success_by_type": {
            k: round(mean(t.won for t in v), 4) for k, v in sorted(by_type.items())
        },
    }
