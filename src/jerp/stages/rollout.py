"""rollout@i: G episodes per train task with policy i-1 and pool i-1 (sampled actions).

Besides the trajectories it reports whether they can teach: the share of groups
whose episodes are identical and the distinct actions per episode."""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.methods import parts
from jerp.metrics import summarize
from jerp.policy.experience import rollout_diversity
from jerp.policy.rollout import EpisodeSpec
from jerp.records import Trajectory, read_snapshot, read_tasks, write_json, write_trajectories
from jerp.stages.common import load_agent, play_episodes, retriever


def run(p: Params, root: Path, iteration: int, prev: int) -> list[Trajectory]:
    method = parts(p.run.method)
    if not (method.rules or method.finetune):  # react: nothing learns from experience
        write_trajectories(root / paths.rollouts_file(iteration), [])
        write_json(root / paths.rollout_stats_file(iteration),
                   {"iteration": iteration, "episodes": 0, "skipped": p.run.method})
        return []
    tasks = read_tasks(root / paths.tasks_file()).tasks("train")
    pool = read_snapshot(root / paths.rules_file(prev))
    retrieve = retriever(p, root, pool) if method.rules else None
    # Experience is collected by sampling the candidate softmax, so a group's episodes differ.
    agent = load_agent(p, root, seed=p.run.seed * 1000 + iteration,
                       adapter=root / paths.adapter_dir(prev),
                       temperature=p.rollout.temperature)
    specs = [EpisodeSpec(t, g) for t in tasks for g in range(p.rollout.group_size)]
    meta = dict(stage="roll", method=p.run.method, iteration=iteration, seed=p.run.seed,
                policy_version=agent.policy.version,
                pool_version=str(paths.rules_file(prev)) if retrieve else "none")
    trajs = play_episodes(p, root, agent, specs, meta, retrieve, desc=f"rollout@{iteration}")
    write_trajectories(root / paths.rollouts_file(iteration), trajs)
    stats = {"iteration": iteration, **summarize(trajs), **rollout_diversity(trajs)}
    write_json(root / paths.rollout_stats_file(iteration), stats)
    return trajs
