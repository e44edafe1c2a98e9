"""warmstart: LoRA on the reference successes of the warm-start train games.

A shared prelude for every method (it reads no method-specific param, so DVC's
run cache shares it across `dvc exp run -S run.method=...`): iteration 0 is
the warm-started policy without rules. `warmstart.games_per_type: 0` turns it
off (the papers' protocol): iteration 0 is then the base model.
`warmstart.subgoal_slots` trains on the prompts of H2R's executor instead (each
step's subgoal in the memory slot): a warm start of its own, for h2r and jerp_h2r.
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import WARMSTART
from jerp.policy.experience import success_items
from jerp.records import (
    AdapterManifest,
    RuleSnapshot,
    Trajectory,
    read_tasks,
    read_trajectories,
    write_json,
)
from jerp.stages.common import load_trainable, train_config, write_adapter


def run(p: Params, root: Path) -> dict:
    out = root / paths.adapter_dir(0)
    tl = read_tasks(root / paths.tasks_file())
    if not p.warmstart.games_per_type or WARMSTART not in tl.splits:
        write_adapter(out, None, AdapterManifest(kind="none", base=p.policy.model, iteration=0,
                                                 stage="warmstart (off)"))
        stats = {"stage": "warmstart", "enabled": False}
        write_json(root / paths.train_stats_file(0), stats)
        return stats
    ids = {t.task_id for t in tl.tasks(WARMSTART)}
    refs = [r for r in read_trajectories(root / paths.references_file())
            if r.task_id in ids and r.won]
    if p.warmstart.subgoal_slots:
        refs = with_subgoal_slots(p, refs, {t.task_id: t for t in tl.tasks(WARMSTART)})
    policy = load_trainable(p, root, adapter=None)
    from jerp.policy.train import train

    cfg = train_config(p, lr=p.warmstart.lr, epochs=p.warmstart.epochs,
                       max_minutes=p.warmstart.max_minutes, seed=p.run.seed)
    st = train(policy, success_items(refs), cfg, desc="warmstart")
    stats = {"stage": "warmstart", "enabled": True, "references": len(refs), **st.summary()}
    write_adapter(out, policy, AdapterManifest(kind="lora", base=p.policy.model, iteration=0,
                                               stage="warmstart", stats=stats))
    write_json(root / paths.train_stats_file(0), {**stats, "loss_curve": st.history})
    return stats


def with_subgoal_slots(p: Params, refs: list[Trajectory], tasks: dict[str, Task]
                       ) -> list[Trajectory]:
    """Each reference step with the memory slot H2R's executor shows at iteration 0
    (an empty memory: the current subgoal of the environment's default plan, moving on
    as the walkthrough closes subgoals), so the warm start learns the prompts it will
    act with."""
    from jerp.memory.executor import SubgoalMemory

    memory = SubgoalMemory(RuleSnapshot(iteration=0, capacity=p.rules.capacity, rules=[]),
                           p.env.name, p.rules.execution_top_k, p.rules.subgoal_budget)
    out = []
    for r in refs:
        steps = []
        for t, s in enumerate(r.steps):
            m = memory(tasks[r.task_id], r.goal, r.steps[:t])
            steps.append(s.model_copy(update={
                "subgoal": m.subgoal, "memories": [x.id for x in m.shown],
                "slot": m.text}))
        out.append(r.model_copy(update={"steps": steps}))
    return out
