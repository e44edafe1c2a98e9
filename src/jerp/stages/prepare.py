"""prepare: the task lists of this run, iteration 0's (empty) rule pool, and the warm
start's settings that follow from run.method (a file the warm start depends on instead
of run.method, so methods with equal settings share one warm start through DVC).

Splits: train (rollouts and reflection), eval_in, eval_out, warmstart: other
train games whose reference successes the warm start (and RFT) learn from; fresh (with
rollout.fresh_games): train games in neither, rolled out a few an iteration. The
eval games whose reference states are only ranked are stage `states`' own (states.py),
so that ranking more of them leaves every training stage's inputs as they were.
"""

from __future__ import annotations

import os
from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.registry import FRESH, SPLITS, WARMSTART, data_root, sample_split
from jerp.methods import warmstart_settings
from jerp.records import (
    RuleSnapshot,
    TaskList,
    WarmstartSettings,
    write_json,
    write_jsonl,
    write_snapshot,
    write_tasks,
)

ALL = 1 << 30  # per_type: every game of the type


def run(p: Params, root: Path) -> TaskList:
    droot = data_root(p.env, os.environ, root)
    splits = {}
    for split in SPLITS:
        tasks = sample_split(p.env, droot, split, p.run.seed)
        splits[split] = [t.__dict__ for t in tasks]
    if p.warmstart.games_per_type:
        train_ids = {t["task_id"] for t in splits["train"]}
        warm = sample_split(p.env, droot, "train", p.run.seed + 1,
                            per_type=p.warmstart.games_per_type, exclude=train_ids)
        splits[WARMSTART] = [t.__dict__ for t in warm]
    if p.rollout.fresh_games:  # every train game in neither split, dealt k an iteration
        taken = {t["task_id"] for t in splits["train"] + splits.get(WARMSTART, [])}
        fresh = sample_split(p.env, droot, "train", p.run.seed, per_type=ALL, exclude=taken)
        splits[FRESH] = [t.__dict__ for t in fresh]
    tl = TaskList(env=p.env.name, seed=p.run.seed, splits=splits)
    write_tasks(root / paths.tasks_file(), tl)
    write_snapshot(root / paths.rules_file(0), RuleSnapshot.empty(p.rules.capacity))
    write_jsonl(root / paths.wins_file(0), [])
    settings = warmstart_settings(p.run.method, p.rules.subgoal_slot, p.rules.planner)
    write_json(root / paths.warmstart_settings_file(), WarmstartSettings(**settings).model_dump())
    return tl
