"""Steps per second of the WebShop env alone, replaying scripted reference purchases.

Usage: python bench/webshop_env.py [--tasks 300] [--runs 5]
Prints the median over runs, with the search and title-noun caches cleared before each run
("cold": every search and every spaCy call is paid) and kept ("warm": repeated episodes).
"""

from __future__ import annotations

import argparse
import statistics
import time

from jerp.envs.webshop import WebShopEnv, list_tasks
from jerp.envs.webshop.env import _search
from jerp.envs.webshop.reward import _token_set_ratio_processed, title_nouns


def replay(env: WebShopEnv, episodes: list) -> tuple[int, float, float]:
    """Play each (task, actions) once; return steps (resets not counted), seconds, reward."""
    steps, total = 0, 0.0
    t0 = time.perf_counter()
    for task, actions in episodes:
        env.reset(task)
        for a in actions:
            res = env.step(a)
            steps += 1
        total += res.reward
    return steps, time.perf_counter() - t0, total / len(episodes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=300)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--split", default="train")
    args = ap.parse_args()

    t0 = time.perf_counter()
    env = WebShopEnv()
    tasks = list_tasks(split=args.split)
    stride = max(1, len(tasks) // args.tasks)
    tasks = tasks[::stride][: args.tasks]
    episodes = [(t, env.reference(t)) for t in tasks]
    setup = time.perf_counter() - t0
    replay(env, episodes[:1])  # load spaCy once, outside the timings

    results = {}
    for mode in ("cold", "warm"):
        rates = []
        for _ in range(args.runs):
            if mode == "cold":
                _search.cache_clear()
                title_nouns.cache_clear()
                _token_set_ratio_processed.cache_clear()
            steps, secs, mean_reward = replay(env, episodes)
            rates.append(steps / secs)
        results[mode] = rates
    n_steps = sum(len(a) for _, a in episodes)
    print(f"setup (data, index, {len(tasks)} references): {setup:.2f} s")
    print(f"{len(tasks)} episodes, {n_steps} steps per run, mean reward {mean_reward:.3f}")
    for mode, rates in results.items():
        print(f"{mode}: median {statistics.median(rates):.0f} steps/s "
              f"(runs: {', '.join(f'{r:.0f}' for r in rates)})")


if __name__ == "__main__":
    main()
