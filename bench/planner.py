"""Does the warm start teach H2R's policy planner? (memory/planner.py, issue 29)

The untrained 135M policy copies the option list it is shown instead of planning. This
warm-starts a fresh LoRA adapter in this process, as stage `warmstart` does for an H2R
method with rules.planner policy: expert references (replay.play_expert) of a few
ALFWorld train games, the executor's slotted prompts (`with_subgoal_slots`) and the
planner's decisions that write each reference's realised plan (`planner_teacher`).
Before and after, the policy plans one valid_unseen (eval_out) game per task type with
an empty memory, as iteration 1 would; printed: each plan, the planner-decision CE on
the training decisions, and the plan match share: the steps of the default plans
(the hand-written PLANS table) the written plan has at the same position, over all
goals (extra steps count against nothing; missing and wrong ones count as misses).

Run: .venv/bin/python bench/planner.py [--per-type 2 --epochs 1 --plan-only]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from jerp.runtime import configure  # noqa: E402

configure(ROOT)

import torch  # noqa: E402

from jerp.adapters import warmstart_config  # noqa: E402
from jerp.config import LoraParams, PolicyParams, parse_params  # noqa: E402
from jerp.envs.alfworld import AlfWorldEnv, list_tasks, resolve_data_root  # noqa: E402
from jerp.envs.registry import SPECS  # noqa: E402
from jerp.memory.planner import EpisodePlanner, plan_options  # noqa: E402
from jerp.policy.agent import Agent  # noqa: E402
from jerp.policy.experience import success_items  # noqa: E402
from jerp.policy.model import load_policy, set_threads  # noqa: E402
from jerp.policy.train import TrainItem, pack_items, train, window_loss  # noqa: E402
from jerp.records import RuleSnapshot  # noqa: E402
from jerp.replay import play_expert  # noqa: E402
from jerp.stages.warmstart import planner_teacher, with_subgoal_slots  # noqa: E402

SPEC = SPECS["alfworld"]
EMPTY = RuleSnapshot(iteration=0, capacity=20, rules=[])


def first_per_type(tasks, n: int):
    out, seen = [], {}
    for t in tasks:
        if seen.get(t.task_type, 0) < n:
            seen[t.task_type] = seen.get(t.task_type, 0) + 1
            out.append(t)
    return out


def plans(policy, goals) -> list[list[str]]:
    """The policy planner's plan for each (task, goal), greedy, empty memory."""
    policy.model.eval()
    agent = Agent(policy, PolicyParams(), seed=0)  # a fresh one: no stale prompt cache
    planner = EpisodePlanner(EMPTY, SPEC.actions, SPEC.task_types, 0,
                             score=partial(agent.option_values, "alfworld"))
    with torch.no_grad():
        out = [planner(task, goal).steps for task, goal in goals]
    policy.model.train()
    return out


def match_share(written: list[list[str]], goals) -> tuple[float, int]:
    """(default-plan steps matched at their position / all default-plan steps, plans
    equal to the default plan)."""
    hit = total = exact = 0
    for plan, (task, goal) in zip(written, goals, strict=True):
        want = SPEC.actions.default_plan(task.task_type, goal)
        hit += sum(a == b for a, b in zip(plan, want, strict=False))
        total += len(want)
        exact += plan == want
    return hit / total, exact


def plan_ce(policy, items: list[TrainItem], cfg) -> float:
    """Mean candidate CE over the planner decisions of `items`."""
    only = [TrainItem(it.traj, {}, it.rules, it.plan) for it in items if it.plan]
    windows = pack_items(policy, only, cfg.window)
    with torch.no_grad():
        losses = [float(window_loss(policy, w, cfg)[0]) for w in windows]
    return sum(losses) / len(losses)


def show(title: str, written, goals) -> None:
    share, exact = match_share(written, goals)
    print(f"\n{title}: match share {share:.2f}, exact plans {exact}/{len(goals)}")
    for plan, (task, goal) in zip(written, goals, strict=True):
        listed = plan_options(SPEC.actions, goal)
        print(f"  {goal!r} ({task.task_type})\n    listed:  {listed}\n    plan:    {plan}"
              f"\n    default: {SPEC.actions.default_plan(task.task_type, goal)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-type", type=int, default=2, help="train references per task type")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--plan-only", action="store_true",
                    help="train on the planner decisions alone (no executor steps)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 2)))
    args = ap.parse_args()
    set_threads(args.threads)
    root = resolve_data_root(None, os.environ, ROOT)
    p = parse_params({"run": {"method": "h2r"},
                      "warmstart": {"epochs": args.epochs, "lr": args.lr}})
    env = AlfWorldEnv(root, max_steps=p.env.max_steps)
    t0 = time.perf_counter()
    try:
        train_tasks = first_per_type(list_tasks(root, "train"), args.per_type)
        refs = [play_expert(env, t, p.env.max_steps) for t in train_tasks]
        evals = first_per_type(list_tasks(root, "eval_out"), 1)
        goals = [(t, env.reset(t).goal) for t in evals]
    finally:
        env.close()
    won = [r for r in refs if r.won]
    print(f"references: {len(won)} won of {len(refs)} expert games "
          f"({time.perf_counter() - t0:.0f} s); eval goals: {len(goals)}")
    slotted = with_subgoal_slots(p, won, {t.task_id: t for t in train_tasks})
    items = success_items(slotted, plan_for=planner_teacher(p))
    if args.plan_only:
        items = [TrainItem(it.traj, {}, it.rules, it.plan) for it in items if it.plan]
    print(f"plans taught: {sum(bool(it.plan) for it in items)} of {len(won)}; planner "
          f"decisions: {sum(len(it.plan) for it in items)}; executor decisions: "
          f"{sum(len(it.targets) for it in items)}")
    for it in items:
        if not it.plan:
            print(f"  not taught: {it.traj.goal!r}")

    policy = load_policy("smollm2", ROOT / ".cache" / "models", "float32", None,
                         trainable=True, lora=LoraParams())
    cfg = replace(warmstart_config(p, seed=0), max_minutes=30)
    before = plans(policy, goals)
    ce0 = plan_ce(policy, items, cfg)
    show("before", before, goals)
    st = train(policy, items, cfg, desc="warmstart")
    after = plans(policy, goals)
    ce1 = plan_ce(policy, items, cfg)
    show("after", after, goals)
    print(f"\nplanner-decision CE on the training decisions: {ce0:.3f} -> {ce1:.3f}")
    print(f"training: {st.optimizer_steps} steps, {st.windows} windows, {st.decisions} "
          f"decisions, {st.seconds:.0f} s, CE first/last batch {st.ce_first:.3f}/"
          f"{st.ce_last:.3f}")
    b, a = match_share(before, goals), match_share(after, goals)
    print(f"match share (default-plan steps at their position): {b[0]:.2f} -> {a[0]:.2f}; "
          f"exact plans {b[1]} -> {a[1]} of {len(goals)}")


if __name__ == "__main__":
    main()
