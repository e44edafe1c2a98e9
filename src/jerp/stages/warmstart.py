"""warmstart: LoRA on the reference successes of the warm-start train games.

A shared prelude for every method (it reads no method-specific param, so DVC's
run cache shares it across `dvc exp run -S run.method=...`): iteration 0 is
the warm-started policy without rules. What a method needs of it comes from
the settings file `prepare` derives from run.method (paths.warmstart_settings_file).
`warmstart.games_per_type: 0` turns it off (the papers' protocol): iteration 0 is
then the base model.
`warmstart.dagger_rounds` then lets the policy play the warm-start games and learn the
expert's label at every state it reached (DAgger, as ALFWorld's TextDAgger agent was
trained): imitation alone never shows the policy its own mistakes.
With `subgoal_slots` (h2r and jerp_h2r) it trains on the prompts of H2R's executor
instead (each step's subgoal in the memory slot): a warm start of their own. With
`plan_choices` too (their policy writes the plan: rules.planner policy) it also learns
the planner's decisions: each reference's realised plan chosen step by step among the
options the planner is offered, then "done" (`planner_teacher`; memory/planner.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from jerp import paths
from jerp.adapters import load_trainable, warmstart_config, write_adapter
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import WARMSTART, env_spec
from jerp.memory.base import StepMemory, with_slots
from jerp.metrics_schema import TrainRecord, write_record
from jerp.policy.experience import dagger_items, success_items
from jerp.records import (
    AdapterManifest,
    RuleSnapshot,
    Trajectory,
    WarmstartSettings,
    read_model,
    read_tasks,
    read_trajectories,
)


def run(p: Params, root: Path) -> dict:
    out = root / paths.adapter_dir(0)
    tl = read_tasks(root / paths.tasks_file())
    if not p.warmstart.games_per_type or WARMSTART not in tl.splits:
        write_adapter(out, None, AdapterManifest(kind="none", base=p.policy.model, iteration=0,
                                                 stage="warmstart (off)"))
        stats = {"stage": "warmstart", "enabled": False}
        write_record(root / paths.train_stats_file(0), TrainRecord(**stats))
        return stats
    ids = {t.task_id for t in tl.tasks(WARMSTART)}
    refs = [r for r in read_trajectories(root / paths.references_file())
            if r.task_id in ids and r.won]
    settings = read_model(root / paths.warmstart_settings_file(), WarmstartSettings)
    memory = slot_memory(p, settings)
    if memory is not None:
        refs = with_slots(refs, memory, {t.task_id: t for t in tl.tasks(WARMSTART)})
    policy = load_trainable(p, root, adapter=None)
    from jerp.policy.train import train

    cfg = warmstart_config(p, seed=p.run.seed)
    teach = planner_teacher(p) if settings.plan_choices else None
    items = success_items(refs, plan_for=teach)
    st = train(policy, items, cfg, desc="warmstart")
    stats = {"stage": "warmstart", "enabled": True, "references": len(refs), **st.summary()}
    if teach is not None:
        stats["plan_choices"] = sum(len(it.plan) for it in items)
        stats["plans_taught"] = sum(bool(it.plan) for it in items)
    curve = list(st.history)
    rounds = []
    if p.warmstart.dagger_rounds and env_spec(p.env.name).expert:
        games = tl.tasks(WARMSTART)
        for k in range(1, p.warmstart.dagger_rounds + 1):
            played = dagger_play(p, root, policy, games, k, memory)
            items += dagger_items(played)
            st = train(policy, items, replace(cfg, seed=p.run.seed + k),
                       desc=f"warmstart dagger {k}")
            rounds.append({"round": k, **dagger_round_stats(played), **st.summary()})
            curve += [{**h, "round": k} for h in st.history]
        stats["dagger"] = rounds
    write_adapter(out, policy, AdapterManifest(kind="lora", base=p.policy.model, iteration=0,
                                               stage="warmstart", stats=stats))
    write_record(root / paths.train_stats_file(0), TrainRecord(**stats, loss_curve=curve))
    return stats


def dagger_play(p: Params, root: Path, policy, games: list[Task], k: int,
                memory: StepMemory | None = None) -> list[Trajectory]:
    """The policy in training plays each warm-start game once, greedy, in this process
    (its weights are not on disk yet), with the memory slot it learnt on; every step
    keeps the expert's label."""
    from jerp.envs.registry import make_env
    from jerp.policy.agent import Agent
    from jerp.policy.rollout import EpisodeSpec, play

    policy.model.eval()
    try:
        agent = Agent(policy, p.policy.model_copy(update={"temperature": 0.0}),
                      seed=p.run.seed + k)
        return play([EpisodeSpec(t) for t in games], make_env(p, root), agent,
                    p.env.max_steps, p.policy.batch_envs,
                    {"stage": "dagger", "iteration": 0, "seed": p.run.seed},
                    desc=f"dagger {k}", env_workers=0, step_memory=memory)
    finally:
        policy.model.train()


def dagger_round_stats(played: list[Trajectory]) -> dict:
    """How the policy did on the games it was then taught on."""
    from jerp.metrics import expert_agreement

    return {"games": len(played), "won": sum(t.won for t in played),
            "labels": sum(s.expert is not None for t in played for s in t.steps),
            **{k: v for k, v in expert_agreement(played).items() if k == "expert_agreement"}}


def planner_teacher(p: Params):
    """The policy planner's decisions for a reference's realised plan, as it plans at
    iteration 0 (an empty memory: the options the environment names, no memories shown):
    `EpisodePlanner.realised_choices`."""
    from jerp.memory.planner import EpisodePlanner

    spec = env_spec(p.env.name)
    empty = RuleSnapshot.empty(p.rules.capacity)
    # k: memories shown, none from an empty pool whatever rules.top_k (not an input here)
    return EpisodePlanner(empty, spec.actions, spec.task_types, k=0).realised_choices


def slot_memory(p: Params, settings: WarmstartSettings) -> StepMemory | None:
    """The memory slot the warm start's prompts show, as the policy will act at iteration 0:
    with `subgoal_slots` (h2r and jerp_h2r) H2R's executor over an empty memory (the
    current subgoal of the environment's default plan, moving on as the reference closes
    subgoals); with policy.visited the places visited too; None: no slot."""
    from jerp.memory.executor import SubgoalMemory
    from jerp.memory.visited import VisitedMemory

    executor = None
    if settings.subgoal_slots:
        executor = SubgoalMemory(RuleSnapshot.empty(p.rules.capacity),
                                 p.env.name, p.rules.execution_top_k, p.rules.subgoal_budget)
    return VisitedMemory(executor) if p.policy.visited else executor
