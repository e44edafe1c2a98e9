"""states: the reference solutions of more eval games, whose states `evaluate` ranks.

eval.state_games_per_type games per task type of the eval split, none of them played
ones (a state costs one decision, an episode up to max_steps). They live apart from
data/tasks.json and data/references.jsonl on purpose: more reference states change
only this stage and `evaluate`, so a run that ranks more states (the `standard`
preset) reuses every rollout, fine-tuning and revision of the same run without them.
"""

from __future__ import annotations

import os
from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import data_root, sample_split
from jerp.records import Trajectory, read_tasks, write_trajectories
from jerp.replay import REPLAY_LIMIT, play_references

SEED_OFFSET = 2  # train games use run.seed, the warm start's run.seed + 1


def state_games(p: Params, root: Path) -> list[Task]:
    """The extra eval games, drawn by seed and never among the played eval games."""
    if not p.eval.state_games_per_type:
        return []
    played = {t.task_id for t in read_tasks(root / paths.tasks_file()).tasks(p.env.eval_split)}
    return sample_split(p.env, data_root(p.env, os.environ, root), p.env.eval_split,
                        p.run.seed + SEED_OFFSET, per_type=p.eval.state_games_per_type,
                        exclude=played)


def run(p: Params, root: Path) -> list[Trajectory]:
    jobs = [(t, "walkthrough", REPLAY_LIMIT) for t in state_games(p, root)]
    refs = play_references(p, root, jobs, "replay state games")
    write_trajectories(root / paths.state_references_file(), refs)
    return refs
