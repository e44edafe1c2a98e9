"""How well the scripted shopper (WebShop's searching expert) shops, beside the oracle.

Usage: python bench/webshop_shopper.py [--tasks 200] [--split train] [--seed 0]
Plays the shopper (its label at each state, as `references` does for `env.demos: expert`)
on evenly spaced goals of one split, up to replay.EXPERT_LIMIT steps, and the oracle
scripted purchase (`WebShopEnv.reference`, knows the goal's product) on the same goals.
Prints success (reward 1.0) with its 95% Wilson interval, mean reward, steps (median and
mean over all games and over wins), give-ups, and success within 15 steps (the ceiling's
step limit in the 1k-product setting).
"""

from __future__ import annotations

import argparse
import statistics
import time

from jerp.envs.webshop import WebShopEnv, list_tasks
from jerp.records import Trajectory
from jerp.replay import EXPERT_LIMIT, play_expert, replay_reference
from jerp.stats import wilson

CEILING_STEPS = 15


def describe(name: str, trajs: list[Trajectory]) -> str:
    won = [t for t in trajs if t.reward == 1.0]
    lo, hi = wilson(len(won), len(trajs))
    steps = [t.n_steps for t in trajs]
    won_steps = [t.n_steps for t in won] or [0]
    return (f"{name:8s} success {len(won)}/{len(trajs)} = {len(won) / len(trajs):.3f} "
            f"[{lo:.3f}, {hi:.3f}]  mean reward {statistics.fmean(t.reward for t in trajs):.3f}"
            f"  steps median {statistics.median(steps):g} mean {statistics.fmean(steps):.2f}"
            f"  (wins: median {statistics.median(won_steps):g} "
            f"mean {statistics.fmean(won_steps):.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--split", default="train")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    env = WebShopEnv()
    tasks = list_tasks(split=args.split, seed=args.seed)
    tasks = tasks[:: max(1, len(tasks) // args.tasks)][: args.tasks]
    t0 = time.perf_counter()
    shopper = [play_expert(env, t, EXPERT_LIMIT) for t in tasks]
    wall = time.perf_counter() - t0
    oracle = [replay_reference(env, t) for t in tasks]
    ended = [t for t in shopper if t.steps and t.steps[-1].action == "click[buy now]"]
    print(f"{len(tasks)} goals of {args.split} (seed {args.seed}); shopper "
          f"{wall / len(tasks) * 1000:.0f} ms per game")
    print(describe("shopper", shopper))
    print(describe("oracle", oracle))
    print(f"shopper bought in {len(ended)}/{len(tasks)} games (the rest gave up or hit "
          f"{EXPERT_LIMIT} steps); success within {CEILING_STEPS} steps: "
          f"{sum(t.reward == 1.0 and t.n_steps <= CEILING_STEPS for t in shopper)}"
          f"/{len(tasks)}")
    both = sum(s.reward == 1.0 and o.reward == 1.0 for s, o in zip(shopper, oracle, strict=True))
    print(f"won by both: {both}; by the shopper only: "
          f"{sum(s.reward == 1.0 for s in shopper) - both}; by the oracle only: "
          f"{sum(o.reward == 1.0 for o in oracle) - both}")


if __name__ == "__main__":
    main()
