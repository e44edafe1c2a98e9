"""What one worker does with a chunk of episodes or reference states, in any process.

Rollout and evaluation split their episodes into chunks (`runners.chunks`) that run as
Prefect tasks on the configured task runner (`jerp.runners`). A job carries
only plain, picklable data (params, paths, seeds): each worker process builds
its environments and loads its own policy copy once (`agents.load_agent` keeps
it for the next chunk). Sampled decisions draw from a stream per episode, keyed by
the episode's index in the whole stage, so trajectories do not depend on how
the episodes were chunked or which worker played them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jerp import runners
from jerp.agents import load_agent, planner_for, retriever
from jerp.config import Params
from jerp.envs.base import Observation, Task
from jerp.envs.registry import make_env
from jerp.memory.base import StepMemory
from jerp.memory.visited import without_executor
from jerp.policy.agent import Agent
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec, Examples, Retrieve, play
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
    # The per-step memory slot (memory.base.StepMemory); a picklable object, None: no slot.
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


def agent(job: Job) -> Agent:
    """The job's agent (agents.load_agent: this process's policy copy, or the served model)."""
    spec = job.agent
    return load_agent(job.params, job.root, spec.seed, spec.adapter, spec.temperature)


def job_retriever(job: Job) -> Retrieve | None:
    """The per-episode working-set lookup over the job's pool snapshot, or None."""
    return retriever(job.params, job.root, read_snapshot(job.rules)) if job.rules else None


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


def play_episodes(
    p: Params, root: Path, agent: AgentSpec, specs: list[EpisodeSpec], meta: dict,
    rules: Path | None, desc: str, examples: tuple[Path, ...] = (),
    step_memory: StepMemory | None = None,
) -> list[Trajectory]:
    """Play specs in chunks on the run's task runner (params `runner`), with the run's
    environment, step limit and lockstep batch; `rules`: the pool snapshot whose working
    sets the episodes show (None: no rules); `examples`: the trajectory files ExpeL's
    in-context successes come from (empty: none); `step_memory`: what fills each
    decision's memory slot (a picklable memory.base.StepMemory; None: no slot)."""
    job = Job(p, root, agent, rules, meta, desc, examples=examples, step_memory=step_memory)
    ranges = runners.chunks(len(specs), runners.workers(p), p.runner.chunk_episodes)
    key = fingerprint(job, [_spec_key(s) for s in specs])
    parts = runners.spread(
        play_chunk, [(job, specs[a:b], a) for a, b in ranges], name=desc, size=len,
        tally=lambda done: _success([t for part in done for t in part]),
        threads=runners.threads(p), key=key)
    return [t for part in parts for t in part]


def _spec_key(s: EpisodeSpec) -> tuple:
    """What an episode's result depends on besides the job (a retry's notes included)."""
    base = (s.task.task_id, s.task.source, s.episode)
    return (*base, s.trial, tuple(s.notes)) if s.trial or s.notes else base


def _success(trajs: list[Trajectory]) -> str:
    won = sum(t.won for t in trajs)
    return f"{won}/{len(trajs)} won so far"


def play_chunk(job: Job, specs: list[EpisodeSpec], first: int) -> list[Trajectory]:
    """Play `specs`, which are episodes first..first+len-1 of the stage."""
    p = job.params
    ag = agent(job)
    return play(specs, make_env(p, job.root), ag, p.env.max_steps, p.policy.batch_envs,
                job.meta, job_retriever(job), desc=job.desc, first_index=first,
                examples=example_retriever(job), step_memory=job.step_memory,
                planner=planner_for(p, job.root, ag, job.step_memory))


def rank_states(job: Job, refs: list[Trajectory], wrong: dict[str, str]) -> list[StateRank]:
    """Rank the reference action at every state of `refs` (whole reference successes).

    With a pool, also without rules and with the working set retrieved for another
    task type (`wrong[task_type]`), with the same policy: how much of its competence
    lives in the rules and how much in the weights. ExpeL's examples and H2R's per-step
    memory slot (the subgoal and execution memories at that state of the reference) are
    shown in the "shown" prompt only (as the method acts, its plan made once per reference
    by the run's planner); "none" and "wrong" have none."""
    ag = agent(job)
    planner = planner_for(job.params, job.root, ag, job.step_memory)
    retrieve = job_retriever(job)
    examples = example_retriever(job)
    conds = CONDITIONS if retrieve else CONDITIONS[:1]
    # The slot: all of it where experience is shown, else only where the policy has been.
    slots = {c: job.step_memory if c == "shown" else without_executor(job.step_memory)
             for c in conds}
    out: list[StateRank] = []
    for ref in refs:
        task = Task(ref.task_id, ref.env, ref.split, ref.task_type, "")
        shown = _rules(retrieve, task, ref.goal)
        sets = {"shown": shown, "none": [],
                "wrong": _rules(retrieve, Task(ref.task_id, ref.env, ref.split,
                                               wrong.get(ref.task_type, ""), ""), ref.goal)}
        ranks: list[dict[str, int]] = [{} for _ in ref.steps]
        shown_examples = [e.text for e in examples(task, ref.goal)] if examples else []
        plan = planner(task, ref.goal).steps if planner else None
        for cond in conds:
            ctx = EpisodeContext(env=ref.env, goal=ref.goal, rules=[r.text for r in sets[cond]],
                                 initial=ref.initial_observation,
                                 examples=shown_examples if cond == "shown" else [])
            for k, s in enumerate(ref.steps):
                if (memory := slots[cond]) is not None:
                    ctx.slot = memory(task, ref.goal, ref.steps[:k], plan).text
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
