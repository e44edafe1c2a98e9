"""rollout@i: G episodes per train task with policy i-1 and pool i-1 (sampled actions)."""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.methods import parts
from jerp.policy.rollout import EpisodeSpec
from jerp.records import Trajectory, read_snapshot, read_tasks, write_trajectories
from jerp.stages.common import load_agent, play_episodes, retriever


def run(p: Params, root: Path, iteration: int, prev: int) -> list[Trajectory]:
    tasks = read_tasks(root / paths.tasks_file()).tasks("train")
    pool = read_snapshot(root / paths.rules_file(prev))
    retrieve = retriever(p, root, pool) if parts(p.run.method).rules else None
    agent = load_agent(p, root, seed=p.run.seed * 1000 + iteration)
    # Experience is collected with sampling, so a group's episodes differ.
    agent.params = agent.params.model_copy(update={"temperature": p.rollout.temperature})
    specs = [EpisodeSpec(t, g) for t in tasks for g in range(p.rollout.group_size)]
    meta = dict(stage="roll", method=p.run.method, iteration=iteration, seed=p.run.seed,
                policy_version=agent.policy.version,
                pool_version=str(paths.rules_file(prev)) if retrieve else "none")
    trajs = play_episodes(p, root, agent, specs, meta, retrieve, desc=f"rollout@{iteration}")
    write_trajectories(root / paths.rollouts_file(iteration), trajs)
    return trajs
