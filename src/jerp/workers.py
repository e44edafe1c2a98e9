"""What one worker does with a chunk of episodes or reference states, in any process.

Rollout and evaluation split their episodes into chunks (`chunks`) that run as
Prefect tasks on the configured task runner (`jerp.runners`). A job carries
only plain, picklable data (params, paths, seeds): each worker process builds
its environments and loads its own policy copy once (`_policy` keeps it for
the next chunk). Sampled decisions draw from a stream per episode, keyed by
the episode's index in the whole stage, so trajectories do not depend on how
the episodes were chunked or which worker played them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from jerp.config import Params
from jerp.envs.base import Observation, Task
from jerp.policy.agent import Agent
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec, Examples, Retrieve, StepMemory, play
from jerp.records import RuleShown, StateRank, Trajectory, read_snapshot

# The prompts expert states are scored with. "shown": as the method acts (its working
# set, or none); "none": no rules; "wrong": the working set of another task type.
CONDITIONS = ("shown", "none", "wrong")


@dataclass(frozen=True)
class AgentSpec:
    """Which policy acts: the base model + `adapter`, sampling at `temperature`
    (None: params' policy.temperature), with sampling streams seeded by `seed`."""

    adapter: Path | None
    seed: int
    temperature: float | None = None


@dataclass
class Job:
    """Everything a worker needs besides its chunk; plain data, so it pickles."""

    params: Params
    root: Path
    agent: AgentSpec
    rules: Path | None = None  # the pool snapshot whose working sets are shown; None: none
    meta: dict = field(default_factory=dict)  # Trajectory bookkeeping (stage, iteration...)
    desc: str = "episodes"
    # ExpeL: the trajectory files whose successes are shown as in-context examples
    # (memory/examples.py; params expel); empty: none
    examples: tuple[Path, ...] = field(default=(), kw_only=True)
    # The per-step memory slot (rollout.StepMemory); a picklable object, None: no slot.
    step_memory: StepMemory | None = field(default=None, kw_only=True)


def fingerprint(job: Job, items: list) -> str:
    """A digest of everything a job's results depend on: params, policy (the adapter's
    bytes, not its path), pool snapshot, step memory (its pickle: what a worker gets),
    the code of the jerp package, and the items. Results cached under it are reused
    only when all of these are unchanged. A served policy is named by params
    (policy.endpoint, policy.endpoint_model); its key is not part of it (it never
    enters params)."""
    import hashlib
    import pickle

    import jerp

    h = hashlib.sha256()
    for part in (job.params.model_dump_json(), repr(job.agent), repr(sorted(job.meta.items())),
                 job.desc, repr(items)):
        h.update(part.encode())
    if job.step_memory is not None:
        h.update(pickle.dumps(job.step_memory))
    files = [job.rules] if job.rules else []
    files += list(job.examples)
    if job.agent.adapter is not None and job.agent.adapter.is_dir():
        files += sorted(job.agent.adapter.iterdir())
    code = Path(jerp.__file__).parent
    files += sorted(f for f in code.rglob("*") if f.suffix in (".py", ".txt", ".j2"))
    for f in files:
        h.update(str(f.relative_to(code) if f.is_relative_to(code) else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:32]


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def worker_threads(cores: int, workers: int, requested: int = 0) -> int:
    """torch threads per worker: `requested`, else the cores split among the workers.

    More threads than cores collapses throughput (18x measured here beside a busy
    neighbour), so workers never share a core's worth of threads."""
    if requested:
        return requested
    return max(1, cores // max(1, workers))


def chunks(n: int, workers: int, size: int = 0) -> list[tuple[int, int]]:
    """[start, end) ranges covering range(n): `size` items each, or (size 0) about two
    chunks per worker, balanced to within one item."""
    if n <= 0:
        return []
    k = -(-n // size) if size else min(n, 2 * max(1, workers))
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        end = start + base + (i < extra)
        out.append((start, end))
        start = end
    return out


_POLICIES: dict[tuple, object] = {}


def _policy(p: Params, root: Path, adapter: Path | None):
    """This process's copy of the policy, loaded once per (model, dtype, adapter)."""
    from jerp.policy.model import load_policy
    from jerp.stages.common import model_cache

    stamp = None
    if adapter is not None and adapter.exists():
        stamp = tuple(sorted((f.name, f.stat().st_mtime_ns) for f in adapter.iterdir()))
    key = (p.policy.model, str(model_cache(p, root)), p.policy.dtype, p.policy.device,
           str(adapter), stamp)
    if key not in _POLICIES:
        _POLICIES.clear()  # one policy per worker: a stage never needs two
        _POLICIES[key] = load_policy(p.policy.model, model_cache(p, root), p.policy.dtype,
                                     adapter, device=p.policy.device)
    return _POLICIES[key]


def agent(job: Job) -> Agent:
    """The job's agent: over this process's policy copy, or (params `policy.endpoint`)
    over the served model, with no local model loaded."""
    p, spec = job.params, job.agent
    pp = p.policy if spec.temperature is None else p.policy.model_copy(
        update={"temperature": spec.temperature})
    if pp.endpoint is not None:
        from jerp.policy.endpoint import served_agent

        return served_agent(pp, spec.seed, spec.adapter)
    return Agent(_policy(p, job.root, spec.adapter), pp, seed=spec.seed)


def retriever(job: Job) -> Retrieve | None:
    """The per-episode working-set lookup over the job's pool snapshot, or None."""
    if job.rules is None:
        return None
    from jerp.stages.common import retriever as make

    return make(job.params, job.root, read_snapshot(job.rules))


def example_retriever(job: Job) -> Examples | None:
    """The per-episode ExpeL examples over the job's example files, or None."""
    k = job.params.expel.examples
    if not job.examples or k <= 0:
        return None
    from jerp import paths
    from jerp.memory.examples import example_store, render_example, similar_successes
    from jerp.records import read_trajectories

    store = example_store(t for f in job.examples for t in read_trajectories(f))
    index, n = job.root / paths.index_cache(), job.params.expel.max_example_actions

    def examples(task: Task, goal: str) -> list[RuleShown]:
        return [RuleShown(id=t.traj_id, text=render_example(t, n))
                for t in similar_successes(store, goal, k, index)]

    return examples


def play_chunk(job: Job, specs: list[EpisodeSpec], first: int) -> list[Trajectory]:
    """Play `specs`, which are episodes first..first+len-1 of the stage."""
    from jerp.stages.common import make_env

    p = job.params
    return play(specs, make_env(p, job.root), agent(job), p.env.max_steps, p.policy.batch_envs,
                job.meta, retriever(job), desc=job.desc, first_index=first,
                examples=example_retriever(job), step_memory=job.step_memory)


def replay_chunk(p: Params, root: Path, jobs: list[tuple[Task, str, int]]
                 ) -> list[Trajectory]:
    """Play each (task, who, step limit) in one environment of this process: who is
    `walkthrough` (the env's reference), `expert` (its searching expert; a task it
    does not win within the limit is the walkthrough's, recorded as such) or
    `ceiling` (the expert alone, won or not: what it achieves at the run's limit)."""
    from tqdm import tqdm

    from jerp.policy.rollout import play_expert, replay_reference
    from jerp.stages.common import make_env

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


def rank_states(job: Job, refs: list[Trajectory], wrong: dict[str, str]) -> list[StateRank]:
    """Rank the reference action at every state of `refs` (whole reference successes).

    With a pool, also without rules and with the working set retrieved for another
    task type (`wrong[task_type]`), with the same policy: how much of its competence
    lives in the rules and how much in the weights. ExpeL's examples and H2R's per-step
    memory slot (the subgoal and execution memories at that state of the reference) are
    shown in the "shown" prompt only (as the method acts); "none" and "wrong" have none."""
    ag = agent(job)
    retrieve = retriever(job)
    examples = example_retriever(job)
    conds = CONDITIONS if retrieve else CONDITIONS[:1]
    out: list[StateRank] = []
    for ref in refs:
        task = Task(ref.task_id, ref.env, ref.split, ref.task_type, "")
        shown = _rules(retrieve, task, ref.goal)
        sets = {"shown": shown, "none": [],
                "wrong": _rules(retrieve, Task(ref.task_id, ref.env, ref.split,
                                               wrong.get(ref.task_type, ""), ""), ref.goal)}
        ranks: list[dict[str, int]] = [{} for _ in ref.steps]
        shown_examples = [e.text for e in examples(task, ref.goal)] if examples else []
        for cond in conds:
            ctx = EpisodeContext(env=ref.env, goal=ref.goal, rules=[r.text for r in sets[cond]],
                                 initial=ref.initial_observation,
                                 examples=shown_examples if cond == "shown" else [])
            for k, s in enumerate(ref.steps):
                if job.step_memory is not None and cond == "shown":
                    m = job.step_memory(task, ref.goal, ref.steps[:k])
                    ctx.slot = m.text
                if s.admissible:
                    ob = Observation(s.observation, s.admissible, ref.goal, ref.task_type)
                    ranks[k][cond] = ag.expert_rank(ctx, ob, s.action)
                ctx.history.append((s.observation, s.action))
            ag.release(ctx)
        out += [StateRank(task_id=ref.task_id, task_type=ref.task_type, step=k,
                          n_candidates=len(s.admissible), rank=ranks[k])
                for k, s in enumerate(ref.steps) if s.admissible]
    return out


def _rules(retrieve: Retrieve | None, task: Task, goal: str) -> list[RuleShown]:
    return retrieve(task, goal) if retrieve and task.task_type else []
