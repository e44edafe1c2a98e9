"""references: replay each game's reference solution (walkthrough / scripted purchase).

Train references are what reflection contrasts failures with; eval references
give the states at which `evaluate` measures expert-action accuracy.
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths, runners
from jerp.config import Params
from jerp.envs.registry import EVAL_STATES, WARMSTART
from jerp.records import Trajectory, read_tasks, write_trajectories
from jerp.workers import chunks, replay_chunk

REPLAY_LIMIT = 500


def run(p: Params, root: Path) -> list[Trajectory]:
    tl = read_tasks(root / paths.tasks_file())
    tasks = tl.tasks("train") + tl.tasks(p.env.eval_split)
    for extra in (WARMSTART, EVAL_STATES):
        if extra in tl.splits:
            tasks += tl.tasks(extra)
    # A reference is a whole success: replay it past the episode step limit of the run.
    full = p.model_copy(update={"env": p.env.model_copy(update={"max_steps": REPLAY_LIMIT})})
    ranges = chunks(len(tasks), runners.workers(p))
    parts = runners.spread(replay_chunk, [(full, root, tasks[a:b]) for a, b in ranges],
                           name="replay references", size=len)
    refs = [r for part in parts for r in part]
    lost = [r.task_id for r in refs if not r.won]
    if lost:
        print(f"warning: {len(lost)} reference solutions did not win: {lost[:5]}")
    write_trajectories(root / paths.references_file(), refs)
    return refs
