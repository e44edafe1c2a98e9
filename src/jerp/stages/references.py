"""references: replay each game's reference solution (walkthrough / scripted purchase).

Train references are what reflection contrasts failures with; eval references
give the states at which `evaluate` measures expert-action accuracy.
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths, runners
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import WARMSTART
from jerp.records import Trajectory, read_tasks, write_trajectories
from jerp.workers import chunks, replay_chunk

REPLAY_LIMIT = 500


def replay(p: Params, root: Path, tasks: list[Task], name: str) -> list[Trajectory]:
    """Each task's reference solution, replayed on the real engine across the runner's
    workers. A reference is a whole success: it is replayed past the run's step limit."""
    if not tasks:
        return []
    full = p.model_copy(update={"env": p.env.model_copy(update={"max_steps": REPLAY_LIMIT})})
    ranges = chunks(len(tasks), runners.workers(p))
    parts = runners.spread(replay_chunk, [(full, root, tasks[a:b]) for a, b in ranges],
                           name=name, size=len)
    refs = [r for part in parts for r in part]
    lost = [r.task_id for r in refs if not r.won]
    if lost:
        print(f"warning: {len(lost)} reference solutions did not win: {lost[:5]}")
    return refs


def run(p: Params, root: Path) -> list[Trajectory]:
    tl = read_tasks(root / paths.tasks_file())
    tasks = tl.tasks("train") + tl.tasks(p.env.eval_split)
    if WARMSTART in tl.splits:
        tasks += tl.tasks(WARMSTART)
    refs = replay(p, root, tasks, "replay references")
    write_trajectories(root / paths.references_file(), refs)
    return refs
