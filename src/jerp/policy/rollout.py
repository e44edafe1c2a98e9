"""Lockstep episodes: several environments step together so model calls batch.

Each slot holds one environment, reset to the next queued task when its
episode ends (never an environment per game: that leaks memory in ALFWorld).
A slot's environment lives in this process or in a worker process
(envs/processes.py); with workers, the engine steps while the model decides
for the other slots.

Two kinds of memory reach the prompt: the working set (`Retrieve`), looked up
once per episode and kept in the cached header, and the per-step memory slot
(`StepMemory`), asked before every decision and rendered after the header
(memory.base.render_slot), so a change of subgoal re-forwards only from the slot on.
H2R's plan (`Planner`) is made once per episode, right after reset, and handed to the
step memory with every call; the trajectory records it and who wrote it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tqdm import tqdm

from jerp.envs.base import Env, Observation, Task
from jerp.envs.processes import EnvHandle, LocalEnv, RemoteEnv, wait_any
from jerp.memory.base import MemorySlot, Plan, Planner, StepMemory
from jerp.policy.agent import Agent, Decision
from jerp.policy.prompts import EpisodeContext
from jerp.records import RuleShown, StepRecord, Trajectory

Retrieve = Callable[[Task, str], list[RuleShown]]  # (task, goal) -> working set
# (task, goal) -> ExpeL's in-context examples: (trajectory id, rendered text) each
Examples = Callable[[Task, str], list[RuleShown]]


@dataclass
class EpisodeSpec:
    """One episode to play: a task and its index in the task's group of G episodes;
    Reflexion's later trials also carry their number and the notes of earlier ones."""

    task: Task
    episode: int = 0
    trial: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Slot:
    env: EnvHandle
    spec: EpisodeSpec | None = None
    rules: list[RuleShown] = field(default_factory=list)
    examples: list[RuleShown] = field(default_factory=list)
    ctx: EpisodeContext | None = None
    memory: MemorySlot | None = None  # the slot shown at the pending decision
    plan: Plan | None = None  # the episode's plan (H2R), made at reset
    subgoals: list[str] = field(default_factory=list)
    obs: Observation | None = None
    steps: list[StepRecord] = field(default_factory=list)
    reward: float = 0.0
    won: bool = False
    pending: tuple | None = None  # ("reset", idx) or ("step", Decision) while the env works


def play(
    specs: list[EpisodeSpec],
    make_env: Callable[[], Env],
    agent: Agent,
    max_steps: int,
    batch_envs: int,
    meta: dict,
    retrieve: Retrieve | None = None,
    desc: str = "episodes",
    env_workers: int | None = None,
    first_index: int = 0,
    examples: Examples | None = None,
    step_memory: StepMemory | None = None,
    planner: Planner | None = None,
) -> list[Trajectory]:
    """Play every spec; returns trajectories in the order of `specs`.

    `retrieve` gives each episode its working set once, right after reset (the
    goal is known then), and it stays fixed for the episode. `meta` fills the
    bookkeeping fields of each Trajectory (stage, method, iteration,
    policy_version, pool_version, seed). `env_workers` (default: the agent's
    `policy.env_workers`) of the `batch_envs` environments run in their own
    processes, so their resets and steps overlap the model's forwards; the
    agent decides for whichever episodes have an observation, so trajectories
    do not depend on the number of workers or on `batch_envs`. `first_index`: the
    index of specs[0] among the stage's episodes (a chunk's offset); an episode's
    sampling stream is keyed by that global index, so chunking changes nothing.
    `examples` gives each episode its in-context successes (ExpeL) at reset, like
    `retrieve`; a spec's `notes` (Reflexion) are shown from its first step.
    `step_memory` (optional) fills the prompt's memory slot before every decision;
    each StepRecord keeps the subgoal and memory ids it showed, the Trajectory the
    sequence of subgoals (an entry for each step whose non-empty subgoal differs
    from the previous step's). `planner` (optional) makes each episode's plan once,
    after reset; the step memory gets it with every call (None: no plan, the step
    memory makes its own), the Trajectory records it and its source.
    """
    if env_workers is None:
        env_workers = agent.params.env_workers
    meta = {"score": agent.params.score, **meta}
    queue = deque(enumerate(specs))
    results: dict[int, Trajectory] = {}
    n = min(batch_envs, len(specs))
    n_remote = min(env_workers, n)
    slots = [_Slot(RemoteEnv(make_env) if i < n_remote else LocalEnv(make_env))
             for i in range(n)]
    order: dict[int, int] = {}
    bar = tqdm(total=len(specs), desc=desc, unit="ep", dynamic_ncols=True)
    try:
        for s in slots:
            _start(s, queue, order, first_index)
        while any(s.spec for s in slots):
            busy = [s for s in slots if s.spec and s.pending]
            if len(busy) == sum(bool(s.spec) for s in slots) and not any(map(_answered, busy)):
                wait_any([s.env for s in busy])  # nothing to decide: wait for an env
            for s in busy:
                if not _answered(s):
                    continue
                if _receive(s, max_steps, retrieve, examples, planner):
                    idx = order.pop(id(s))
                    agent.release(s.ctx)
                    results[idx] = _finish(s, meta)
                    bar.update(1)
                    bar.set_postfix(won=sum(t.won for t in results.values()))
                    _start(s, queue, order, first_index)
            active = [s for s in slots if s.spec and not s.pending]
            # Rank mode decides per episode anyway: send each action at once so that
            # env's step overlaps the next decision. Generate mode batches its prompts.
            groups = [[s] for s in active] if _per_episode(agent) else [active]
            if step_memory is not None:
                for s in active:
                    _fill_slot(s, step_memory)
            for group in filter(None, groups):
                decisions = agent.decide([s.ctx for s in group], [s.obs for s in group])
                for s, d in zip(group, decisions, strict=True):
                    _act(s, d)
    finally:
        bar.close()
        for s in slots:
            s.env.close()
    return [results[i] for i in range(len(specs))]


def _per_episode(agent: Agent) -> bool:
    return agent.params.mode == "rank"


def _is_thought(action: str) -> bool:
    return action.lower().startswith("think:")


def _answered(slot: _Slot) -> bool:
    """The slot's environment has answered (a thought needs no answer)."""
    return slot.pending[0] == "step" and _is_thought(slot.pending[1].action) or slot.env.ready()


def _start(slot: _Slot, queue: deque, order: dict[int, int], first_index: int) -> None:
    slot.spec, slot.pending = None, None
    if not queue:
        return
    idx, spec = queue.popleft()
    order[id(slot)] = idx
    slot.spec = spec
    slot.ctx, slot.memory, slot.subgoals, slot.plan = None, None, [], None
    slot.steps, slot.reward, slot.won = [], 0.0, False
    slot.pending = ("reset", first_index + idx)
    slot.env.send("reset", spec.task)


def _fill_slot(slot: _Slot, step_memory: StepMemory) -> None:
    """Ask for the next decision's memory slot and render it into the context."""
    plan = slot.plan.steps if slot.plan else None
    m = step_memory(slot.spec.task, slot.ctx.goal, list(slot.steps), plan)
    if not isinstance(m, MemorySlot):
        raise TypeError(f"step_memory must return a MemorySlot, got {type(m).__name__}")
    slot.memory = m
    slot.ctx.slot = m.text
    if m.subgoal and (not slot.steps or slot.steps[-1].subgoal != m.subgoal):
        slot.subgoals.append(m.subgoal)


def _act(slot: _Slot, d: Decision) -> None:
    slot.pending = ("step", d)
    if not _is_thought(d.action):
        slot.env.send("step", d.action)


def _receive(slot: _Slot, max_steps: int, retrieve: Retrieve | None,
             examples: Examples | None = None, planner: Planner | None = None) -> bool:
    """Apply the environment's answer to the slot; True when the episode has ended."""
    kind, *rest = slot.pending
    slot.pending = None
    if kind == "reset":
        slot.obs = slot.env.recv()
        slot.rules = retrieve(slot.spec.task, slot.obs.goal) if retrieve else []
        slot.examples = examples(slot.spec.task, slot.obs.goal) if examples else []
        slot.ctx = EpisodeContext(env=slot.spec.task.env, goal=slot.obs.goal,
                                  rules=[r.text for r in slot.rules], seed=rest[0],
                                  initial=slot.obs.text,
                                  examples=[e.text for e in slot.examples],
                                  notes=list(slot.spec.notes))
        slot.plan = planner(slot.spec.task, slot.obs.goal) if planner else None
        return False
    (d,) = rest
    action = d.action
    obs = slot.obs
    if _is_thought(action):
        # A ReAct thought does not step the world.
        next_obs = Observation("OK.", obs.admissible, obs.goal, obs.task_type)
        reward, done, won = 0.0, False, False
    else:
        res = slot.env.recv()
        next_obs, reward, done, won = res.observation, res.reward, res.done, res.won
    slot.steps.append(StepRecord(
        observation=obs.text, admissible_count=len(obs.admissible), action=action,
        logprob=d.logprob, valid=d.valid, reward=reward, admissible=list(obs.admissible),
        prob=d.prob, temperature=d.temperature,
        history_from=d.history_from,
        subgoal=slot.memory.subgoal if slot.memory else None,
        memories=[r.id for r in slot.memory.shown] if slot.memory else [],
        slot=slot.ctx.slot, expert=obs.expert,
    ))
    slot.ctx.history.append((obs.text, action))
    slot.obs = next_obs
    slot.reward = max(slot.reward, reward)
    slot.won = slot.won or won
    return done or won or len(slot.steps) >= max_steps


def _finish(slot: _Slot, meta: dict) -> Trajectory:
    spec = slot.spec
    t = spec.task
    trial = f"/t{spec.trial}" if spec.trial else ""
    return Trajectory(
        traj_id=f"{meta.get('stage', 'eval')}{meta.get('iteration', 0)}:{t.task_id}"
                f"#{spec.episode}{trial}",
        task_id=t.task_id, env=t.env, split=t.split, task_type=t.task_type,
        goal=slot.ctx.goal, steps=slot.steps, reward=slot.reward, won=slot.won,
        n_steps=len(slot.steps), invalid_actions=sum(not s.valid for s in slot.steps),
        rules_shown=slot.rules, subgoals=list(slot.subgoals), episode=spec.episode,
        plan=list(slot.plan.steps) if slot.plan else [],
        plan_source=slot.plan.source if slot.plan else None,
        trial=spec.trial, notes_shown=list(spec.notes),
        examples_shown=[e.id for e in slot.examples],
        **{k: v for k, v in meta.items() if k != "stage"},
    )
