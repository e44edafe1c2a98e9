"""rollout@i: G episodes per train task with policy i-1 and pool i-1 (sampled actions),
and per game of the iteration's share of the fresh games (rollout.fresh_games: train games
outside the warm start) and of the warm-start games (rollout.warmstart_games).

Besides the trajectories it reports whether they can teach: the share of groups
whose episodes are identical and the distinct actions per episode."""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.agents import policy_version, step_memory_for
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import FRESH, WARMSTART
from jerp.jobs import AgentSpec, play_episodes
from jerp.methods import parts
from jerp.metrics import summarize
from jerp.metrics_schema import RolloutStats, write_record
from jerp.policy.experience import rollout_diversity
from jerp.policy.rft import rotate
from jerp.policy.rollout import EpisodeSpec
from jerp.records import Trajectory, read_snapshot, read_tasks, write_trajectories


def rollout_tasks(train: list[Task], warm: list[Task], k: int, iteration: int,
                  fresh: list[Task] = (), k_fresh: int = 0) -> list[Task]:
    """The train games, then iteration i's k_fresh fresh games and k warm-start games."""
    return train + dealt(fresh, k_fresh, iteration) + dealt(warm, k, iteration)


def dealt(games: list[Task], k: int, iteration: int) -> list[Task]:
    """Iteration i's k of `games`, dealt one task type at a time (each type's games in id
    order), so consecutive iterations play new games and every type comes round; with k a
    multiple of the types, every iteration plays each type equally."""
    by_type: dict[str, list[Task]] = {}
    for t in sorted(games, key=lambda t: t.task_id):
        by_type.setdefault(t.task_type, []).append(t)
    types = sorted(by_type)
    order = [by_type[ty][n] for n in range(max(map(len, by_type.values()), default=0))
             for ty in types if n < len(by_type[ty])]
    return rotate(order, k, iteration)


def run(p: Params, root: Path, iteration: int, prev: int) -> list[Trajectory]:
    method = parts(p.run.method)
    if not method.learns:  # react, reflexion: nothing learns from experience
        write_trajectories(root / paths.rollouts_file(iteration), [])
        write_record(root / paths.rollout_stats_file(iteration),
                     RolloutStats(iteration=iteration, episodes=0, skipped=p.run.method))
        return []
    tl = read_tasks(root / paths.tasks_file())
    tasks = rollout_tasks(tl.tasks("train"), tl.optional(WARMSTART), p.rollout.warmstart_games,
                          iteration, tl.optional(FRESH), p.rollout.fresh_games)
    rules_file = root / paths.rules_file(prev)
    pool = read_snapshot(rules_file)
    rules = rules_file if method.rules and pool.rules and p.rules.top_k else None
    # Experience is collected by sampling the candidate softmax, so a group's episodes differ.
    adapter = root / paths.adapter_dir(prev)
    agent = AgentSpec(adapter, seed=p.run.seed * 1000 + iteration,
                      temperature=p.rollout.temperature)
    specs = [EpisodeSpec(t, g) for t in tasks for g in range(p.rollout.group_size)]
    meta = dict(stage="roll", method=p.run.method, iteration=iteration, seed=p.run.seed,
                policy_version=policy_version(adapter),
                pool_version=str(paths.rules_file(prev)) if rules else "none")
    trajs = play_episodes(p, root, agent, specs, meta, rules, desc=f"rollout@{iteration}",
                          step_memory=step_memory_for(p, pool))
    write_trajectories(root / paths.rollouts_file(iteration), trajs)
    stats = RolloutStats(iteration=iteration, **summarize(trajs), **rollout_diversity(trajs))
    write_record(root / paths.rollout_stats_file(iteration), stats)
    return trajs
