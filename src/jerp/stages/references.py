"""references: each game's reference success, and the expert's ceiling on the eval games.

Train (warm-start, fresh) references are what the warm start and RFT imitate and what
reflection contrasts failures with: by default the searching expert's wins
(`env.demos: expert`), a game it cannot win replayed from its walkthrough instead.
Eval references stay walkthroughs: `evaluate` ranks the walkthrough action at their
states (walkthrough top-1). The expert also plays each eval game at the run's step
limit: the ceiling row of the report, written apart (`paths.ceiling_file`) so that
nothing a training stage reads comes from an eval game.
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import FRESH, WARMSTART, env_spec
from jerp.metrics import demo_stats, summarize
from jerp.metrics_schema import DemoStats, EpisodeSummary, ReferenceStats, write_record
from jerp.records import TaskList, Trajectory, read_tasks, write_trajectories
from jerp.replay import EXPERT_LIMIT, REPLAY_LIMIT, play_references


def demonstrated(tl: TaskList) -> list[Task]:
    """The games whose references training learns from: train, warm-start, fresh."""
    return tl.tasks("train") + tl.optional(WARMSTART) + tl.optional(FRESH)


def run(p: Params, root: Path) -> list[Trajectory]:
    tl = read_tasks(root / paths.tasks_file())
    learn = demonstrated(tl)
    evals = tl.tasks(p.env.eval_split)
    expert = env_spec(p.env.name).expert
    who = "expert" if expert and p.env.demos == "expert" else "walkthrough"
    jobs = [(t, who, EXPERT_LIMIT) for t in learn] + [(t, "walkthrough", REPLAY_LIMIT)
                                                      for t in evals]
    if expert:
        jobs += [(t, "ceiling", p.env.max_steps) for t in evals]
    played = play_references(p, root, jobs, "play references")
    n_refs = len(learn) + len(evals)
    refs, ceiling = played[:n_refs], played[n_refs:]
    lost = [r.task_id for r in refs if not r.won]
    if lost:
        print(f"warning: {len(lost)} reference solutions did not win: {lost[:5]}")
    write_trajectories(root / paths.references_file(), refs)
    write_trajectories(root / paths.ceiling_file(), ceiling)
    write_record(root / paths.references_stats_file(), ReferenceStats(
        demos=DemoStats(**demo_stats(refs[:len(learn)], who)),
        ceiling=EpisodeSummary(**summarize(ceiling)) if ceiling else None))
    return refs
