"""finetune@i: the policy half of JERP. The rollouts of iteration i (the same ones
reflection used) update adapter i-1 into adapter i:

* rft: candidate cross-entropy on reference successes (the rollout tasks' own and
  a rotating share of the warm-start games') and the agent's wins so far (H2R methods
  whose policy plans: on the planner's decisions that write their realised plans too);
* grpo: the clipped candidate-softmax objective on the rollouts (policy/grpo.py);
* rft+grpo: both terms in one loss;
* finetune.dagger (any algorithm): candidate cross-entropy on the searching expert's
  action at every rollout state it labelled (DAgger, a privileged teacher: off by default).

Prompts are the ones the agent acted with, working set included; references are
shown the working set of pool i for methods that use rules, which is the pool
adapter i will act with. Methods without policy updates copy adapter i-1.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from jerp import paths
from jerp.adapters import (
    adapter_weights,
    copy_adapter,
    load_trainable,
    train_config,
    write_adapter,
)
from jerp.agents import planner_teacher, retriever
from jerp.config import Params
from jerp.envs.base import Task
from jerp.envs.registry import WARMSTART
from jerp.methods import parts
from jerp.metrics_schema import TrainRecord, write_record
from jerp.policy.experience import dagger_items, grpo_items, success_items
from jerp.policy.rft import rotate, successes
from jerp.records import (
    AdapterManifest,
    Trajectory,
    read_snapshot,
    read_tasks,
    read_trajectories,
)


def finetune_config(p: Params, seed: int):
    """finetune@i's update (params finetune). The term weights apply in rft+grpo; a
    one-term algorithm weighs its term 1. Here, not in adapters.py: the warm start
    imports that module and must not depend on these params."""
    fp = p.finetune
    both = fp.algorithm.has_rft and fp.algorithm.has_grpo
    return train_config(p, lr=fp.lr, epochs=fp.epochs, max_minutes=fp.max_minutes,
                        grad_clip=fp.grad_clip, seed=seed, steps=fp.optimizer_steps,
                        batch_sequences=fp.batch_sequences, clip=fp.clip,
                        entropy=fp.entropy, kl=fp.kl, old_probs=fp.old_probs,
                        rft_weight=fp.rft_weight if both else 1.0,
                        grpo_weight=fp.grpo_weight if both else 1.0)


def run(p: Params, root: Path, iteration: int, prev: int) -> dict:
    src, out = root / paths.adapter_dir(prev), root / paths.adapter_dir(iteration)
    method = parts(p.run.method)
    if not method.finetune:
        copy_adapter(src, out, iteration)
        stats = {"stage": "finetune", "iteration": iteration, "enabled": False}
        write_record(root / paths.train_stats_file(iteration), TrainRecord(**stats))
        return stats
    fp = p.finetune
    rollouts = read_trajectories(root / paths.rollouts_file(iteration))
    all_refs = [r for r in read_trajectories(root / paths.references_file()) if r.won]
    refs_by_task = {r.task_id: r for r in all_refs}
    items, data = [], {}
    if fp.algorithm.has_grpo:
        g = grpo_items(rollouts, refs_by_task, std_normalize=fp.std_normalize,
                       step_weight=fp.step_weight, gamma=fp.gamma,
                       progress_weight=fp.progress_reward,
                       keep_zero=fp.entropy > 0 or fp.kl > 0)
        items += g.items
        data.update(g.summary())
    if fp.algorithm.has_rft:
        rft = rft_data(p, root, iteration, all_refs, {t.task_id for t in rollouts})
        if p.policy.visited:  # references show the places visited, as the policy acts
            rft = visited_slots(rft)
        pool = read_snapshot(root / paths.rules_file(iteration)) if method.rules else None
        retrieve = retriever(p, root, pool)

        def rules_for(t: Trajectory) -> list[str] | None:
            if t.source != "reference":
                return None  # a win: the working set it acted with
            if retrieve is None:
                return []
            task = Task(t.task_id, t.env, t.split, t.task_type, "")
            return [r.text for r in retrieve(task, t.goal)]

        teach = planner_teacher(p, pool)
        rft_items = success_items(rft, rules_for, plan_for=teach)
        items += rft_items
        data["rft_references"] = sum(t.source == "reference" for t in rft)
        data["rft_wins"] = sum(t.source != "reference" for t in rft)
        if teach is not None:
            data["plan_choices"] = sum(len(it.plan) for it in rft_items)
            data["plans_taught"] = sum(bool(it.plan) for it in rft_items)
    if fp.dagger:  # the states the policy reached, each with the expert's action there
        dagger = dagger_items(rollouts)
        items += dagger
        data["dagger_states"] = sum(len(it.targets) for it in dagger)
    policy = load_trainable(p, root, adapter=src)
    from jerp.policy.train import train

    cfg = finetune_config(p, seed=p.run.seed * 1000 + iteration)
    reference = None  # the KL's reference: the weights the update starts from (i-1) ...
    if fp.kl > 0 and fp.kl_reference == "warmstart":  # ... or iteration 0's
        reference = adapter_weights(policy, root / paths.adapter_dir(0))
    st = train(policy, items, cfg, desc=f"finetune@{iteration}", reference=reference)
    stats = {"stage": "finetune", "iteration": iteration, "enabled": True,
             "algorithm": fp.algorithm.value, **data, **st.summary()}
    write_adapter(out, policy, AdapterManifest(kind="lora", base=p.policy.model,
                                               iteration=iteration, parent=str(src),
                                               stage="finetune", stats=stats))
    write_record(root / paths.train_stats_file(iteration),
                 TrainRecord(**stats, loss_curve=st.history))
    return stats


def visited_slots(trajs: list[Trajectory]) -> list[Trajectory]:
    """References with each step's places-visited slot (a win has the one it acted with)."""
    from jerp.memory.base import with_slots
    from jerp.memory.visited import VisitedMemory

    refs = [t for t in trajs if t.source == "reference"]
    tasks = {t.task_id: Task(t.task_id, t.env, t.split, t.task_type, "") for t in refs}
    slotted = iter(with_slots(refs, VisitedMemory(), tasks))
    return [next(slotted) if t.source == "reference" else t for t in trajs]


def rft_data(p: Params, root: Path, iteration: int, refs: list[Trajectory],
             rolled: Iterable[str] = ()) -> list[Trajectory]:
    """References of the rollout tasks (the train games and any warm-start games rolled
    out: `rolled`), a rotating share of the other warm-start games', and the agent's own
    wins up to this iteration (reflect@i wrote them, this iteration's included; none with
    finetune.rft_wins off). finetune.rft_fallbacks off drops the walkthrough references
    (a rotating share then rotates over the expert-demonstrated games only)."""
    tl = read_tasks(root / paths.tasks_file())
    own_ids = {t.task_id for t in tl.tasks("train")} | set(rolled)
    warm_ids = {t.task_id for t in tl.optional(WARMSTART)} - own_ids
    if not p.finetune.rft_fallbacks:
        refs = [r for r in refs if r.reference_kind != "walkthrough"]
    own = [r for r in refs if r.task_id in own_ids]
    warm = sorted((r for r in refs if r.task_id in warm_ids), key=lambda r: r.task_id)
    wins = (read_trajectories(root / paths.wins_file(iteration)) if p.finetune.rft_wins
            else [])
    return own + rotate(warm, p.finetune.rft_references, iteration) + successes(wins)
