"""The reference solutions: walkthroughs replayed and the searching expert's play.

Torch-free on purpose: stages `references` and `states` replay games on the
real engine and load no model, so neither their imports nor their DVC deps
reach jerp.policy (an edit there does not re-run them).
"""

from __future__ import annotations

from pathlib import Path

from jerp import runners
from jerp.config import Params
from jerp.envs.base import Env, Observation, Task
from jerp.envs.registry import make_env
from jerp.records import StepRecord, Trajectory

REPLAY_LIMIT = 500  # a walkthrough is a whole success: replayed past the run's step limit
EXPERT_LIMIT = 100  # the expert's wins took 15 steps on average (DESIGN.md section 9)


def replay_reference(env: Env, task: Task, actions: list[str] | None = None) -> Trajectory:
    """Play a reference action sequence (default: the env's own) and record it."""
    obs = env.reset(task)
    actions = env.reference(task) if actions is None else actions
    steps, won, reward = [], False, 0.0
    for a in actions:
        res = env.step(a)
        steps.append(_reference_step(obs, a, res.reward))
        obs, won, reward = res.observation, won or res.won, max(reward, res.reward)
        if res.done:
            break
    return _reference(task, obs, steps, won, reward, "walkthrough")


def play_expert(env: Env, task: Task, limit: int) -> Trajectory:
    """The env's searching expert plays the task (its label at each state, see
    `Observation.expert`) until it wins, gives up or has taken `limit` steps."""
    obs = env.reset(task)
    steps, won, reward = [], False, 0.0
    while obs.expert is not None and len(steps) < limit and not won:
        res = env.step(obs.expert)
        steps.append(_reference_step(obs, obs.expert, res.reward))
        obs, won, reward = res.observation, res.won, max(reward, res.reward)
        if res.done:
            break
    return _reference(task, obs, steps, won, reward, "expert")


def _reference_step(obs: Observation, action: str, reward: float) -> StepRecord:
    return StepRecord(observation=obs.text, admissible_count=len(obs.admissible), action=action,
                      valid=action in obs.admissible, reward=reward,
                      admissible=list(obs.admissible), expert=obs.expert)


def _reference(task: Task, obs: Observation, steps: list[StepRecord], won: bool, reward: float,
               kind: str) -> Trajectory:
    return Trajectory(
        traj_id=f"ref:{task.task_id}", task_id=task.task_id, env=task.env, split=task.split,
        task_type=task.task_type, goal=obs.goal, steps=steps, reward=reward, won=won,
        n_steps=len(steps), policy_version="reference", source="reference",
        reference_kind=kind,
    )


def replay_chunk(p: Params, root: Path, jobs: list[tuple[Task, str, int]]
                 ) -> list[Trajectory]:
    """Play each (task, who, step limit) in one environment of this process: who is
    `walkthrough` (the env's reference), `expert` (its searching expert; a task it
    does not win within the limit is the walkthrough's, recorded as such) or
    `ceiling` (the expert alone, won or not: what it achieves at the run's limit)."""
    from tqdm import tqdm

    env = make_env(p, root)()
    out = []
    try:
        for task, who, limit in tqdm(jobs, desc="references", unit="game"):
            t = play_expert(env, task, limit) if who != "walkthrough" else None
            if t is None or who == "expert" and not t.won:
                t = replay_reference(env, task)
            out.append(t)
        return out
    finally:
        env.close()


def play_references(p: Params, root: Path, jobs: list[tuple[Task, str, int]], name: str
                    ) -> list[Trajectory]:
    """Each (task, who, step limit) played on the real engine across the runner's workers."""
    if not jobs:
        return []
    full = p.model_copy(update={"env": p.env.model_copy(update={"max_steps": REPLAY_LIMIT})})
    ranges = runners.chunks(len(jobs), runners.workers(p))
    parts = runners.spread(replay_chunk, [(full, root, jobs[a:b]) for a, b in ranges],
                           name=name, size=len)
    return [r for part in parts for r in part]
