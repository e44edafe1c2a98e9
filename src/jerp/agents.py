"""Building what acts from params: the agent, its working-set retrieval and per-step
memory (the trainable policy and adapter folders: adapters.py; the reflectors' LLM:
llm.py).

The layer between the stages and policy/ + memory/: every stage and worker builds
these here, so each exists once (one `load_agent`, one `retriever`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from jerp.config import Params
from jerp.envs.base import Task
from jerp.memory.base import Planner
from jerp.policy.agent import Agent
from jerp.policy.model import load_policy, model_cache, read_adapter
from jerp.policy.rollout import Retrieve
from jerp.records import RuleShown, RuleSnapshot


def policy_version(adapter: Path | None) -> str:
    """What Trajectory.policy_version records; checks the adapter folder up front, so a
    missing or broken one stops the stage before any worker starts."""
    m = read_adapter(adapter) if adapter is not None else None
    return str(adapter) if m is not None and m.kind == "lora" else "base"


_POLICIES: dict[tuple, object] = {}


def _policy(p: Params, root: Path, adapter: Path | None):
    """This process's copy of the policy, loaded once per (model, dtype, adapter)."""
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


def load_agent(p: Params, root: Path, seed: int, adapter: Path | None = None,
               temperature: float | None = None) -> Agent:
    """The acting agent, sampling at `temperature` (None: params' policy.temperature):
    over this process's copy of the base model + `adapter` (a pipeline adapter folder;
    an error if it is missing or broken, never a silent fall back to the base model),
    loaded once per process, or over the served model at params `policy.endpoint` (no
    local model loaded)."""
    pp = p.policy if temperature is None else p.policy.model_copy(
        update={"temperature": temperature})
    if pp.endpoint is not None:
        from jerp.policy.served import served_agent

        return served_agent(pp, seed, adapter)
    return Agent(_policy(p, root, adapter), pp, seed=seed)


def retriever(p: Params, root: Path, pool: RuleSnapshot | None) -> Retrieve | None:
    """The per-episode working-set lookup, or None when no rules are shown."""
    if pool is None or not pool.rules or not p.rules.top_k:
        return None
    from jerp.memory.base import Query
    from jerp.memory.choose import memory_for

    memory = memory_for(p, pool, root)  # H2R methods: planning memories for the task

    def retrieve(task: Task, goal: str) -> list[RuleShown]:
        return memory.retrieve(Query(task.task_type, goal), p.rules.top_k)

    return retrieve


def step_memory_for(p: Params, pool: RuleSnapshot | None):
    """The per-step memory slot, or None (no slot); pass it to the rollout as
    `step_memory`. H2R's executor (H2R methods): the subgoal of each decision and its
    execution memories (memory/executor.py); without execution memories yet it still
    tracks the subgoal (from the environment's default plan); none with
    rules.subgoal_slot off (the ablation). With policy.visited, any method: the places
    visited too (memory/visited.py)."""
    from jerp.methods import parts

    executor = None
    if pool is not None and parts(p.run.method).hierarchy and p.rules.subgoal_slot:
        from jerp.memory.executor import SubgoalMemory

        executor = SubgoalMemory(pool, p.env.name, p.rules.execution_top_k,
                                 p.rules.subgoal_budget)
    if p.policy.visited:
        from jerp.memory.visited import VisitedMemory

        return VisitedMemory(executor)
    return executor


def planner_for(p: Params, root: Path, agent: Agent, step_memory) -> Planner | None:
    """H2R's planner over the executor's pool (memory/planner.py), or None when there is
    no executor (`step_memory_for` gave none). rules.planner policy: the acting `agent`
    chooses the plan's subgoals; endpoint: the model at rules.llm_endpoint writes it (the
    config requires that key); memory: the remembered or hand-written plan alone."""
    from jerp.envs.registry import SPECS
    from jerp.memory.executor import SubgoalMemory
    from jerp.memory.planner import EpisodePlanner
    from jerp.memory.visited import executor_of

    step_memory = executor_of(step_memory)
    if not isinstance(step_memory, SubgoalMemory):
        return None
    spec = SPECS[step_memory.env]
    score = write = None
    if p.rules.planner == "endpoint":
        from jerp.llm import llm_generate
        from jerp.memory.planner import PLAN_SYSTEM

        write = llm_generate(p, root, PLAN_SYSTEM)
    elif p.rules.planner == "policy":
        score = partial(agent.option_values, spec.name)
    return EpisodePlanner(step_memory.pool, spec.actions, spec.task_types, p.rules.top_k,
                          score=score, write=write)


def planner_teacher(p: Params, pool: RuleSnapshot | None):
    """What RFT teaches H2R's policy planner (rules.planner policy, an executor): the
    planner's decisions that write a success's realised plan, with pool's memories and
    options (`EpisodePlanner.realised_choices`); None for every other run."""
    from jerp.envs.registry import SPECS
    from jerp.memory.planner import EpisodePlanner
    from jerp.memory.visited import executor_of

    memory = executor_of(step_memory_for(p, pool))
    if memory is None or p.rules.planner != "policy":
        return None
    spec = SPECS[memory.env]
    return EpisodePlanner(memory.pool, spec.actions, spec.task_types,
                          p.rules.top_k).realised_choices
