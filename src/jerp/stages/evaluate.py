"""evaluate@i: the policy of iteration i with pool i on the eval split."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from jerp import paths
from jerp.config import Params
from jerp.envs.base import Observation, Task
from jerp.methods import parts
from jerp.metrics import summarize
from jerp.policy.agent import Agent
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec, Retrieve
from jerp.records import (
    Trajectory,
    read_snapshot,
    read_tasks,
    read_trajectories,
    write_json,
    write_trajectories,
)
from jerp.stages.common import load_agent, play_episodes, retriever


def run(p: Params, root: Path, iteration: int) -> dict:
    tasks = read_tasks(root / paths.tasks_file()).tasks(p.env.eval_split)
    pool = read_snapshot(root / paths.rules_file(iteration))
    use_rules = parts(p.run.method).rules
    retrieve = retriever(p, root, pool) if use_rules else None
    agent = load_agent(p, root, seed=p.run.seed, adapter=root / paths.adapter_dir(iteration))
    meta = dict(stage="eval", method=p.run.method, iteration=iteration, seed=p.run.seed,
                policy_version=agent.policy.version,
                pool_version=str(paths.rules_file(iteration)) if retrieve else "none")
    trajs = play_episodes(p, root, agent, [EpisodeSpec(t) for t in tasks], meta, retrieve,
                          desc=f"evaluate@{iteration}")
    metrics = summarize(trajs)
    metrics["iteration"] = iteration
    metrics["rules_in_pool"] = len(pool.rules)
    if p.eval.expert_states and (root / paths.references_file()).exists():
        refs = [r for r in read_trajectories(root / paths.references_file())
                if r.split == p.env.eval_split]
        metrics["expert_top1"] = expert_top1(agent, refs, retrieve)
    write_trajectories(root / paths.eval_file(iteration), trajs)
    write_json(root / paths.metrics_file(iteration), metrics)
    return metrics


def expert_top1(agent: Agent, refs: list[Trajectory], retrieve: Retrieve | None) -> float:
    """Share of reference states where the greedy policy picks the reference action.

    Success on a dozen games cannot separate methods with a 135M model; this
    accuracy moves long before success does and costs one decision per state.
    """
    hits = total = 0
    for ref in tqdm(refs, desc="expert states", unit="game"):
        task = Task(ref.task_id, ref.env, ref.split, ref.task_type, "")
        rules = retrieve(task, ref.goal) if retrieve else []
        ctx = EpisodeContext(env=ref.env, goal=ref.goal, rules=[r.text for r in rules],
                             initial=ref.initial_observation)
        for s in ref.steps:
            if s.admissible:
                ob = Observation(s.observation, s.admissible, ref.goal, ref.task_type)
                hits += agent.expert_top1(ctx, ob, s.action)
                total += 1
            ctx.history.append((s.observation, s.action))
    return round(hits / total, 4) if total else 0.0
