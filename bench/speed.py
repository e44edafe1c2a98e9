"""Walking-skeleton speeds on this machine: ALFWorld env steps/s and model tokens/s.

Prints medians of several runs for the default settings (params.yaml):
  env   replaying walkthroughs of valid_unseen games (resets excluded / included)
  model forward tokens/s for a batch of prompts of typical length, at the default dtype
Run: .venv/bin/python bench/speed.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from jerp.runtime import configure  # noqa: E402

configure(ROOT)

from jerp.config import load_params  # noqa: E402
from jerp.envs.alfworld import AlfWorldEnv, list_tasks, resolve_data_root  # noqa: E402


def bench_env(root: Path, games: int, runs: int) -> tuple[float, float]:
    env = AlfWorldEnv(root)
    tasks = list_tasks(root, "eval_out")[:games]
    step_rates, total_rates = [], []
    for _ in range(runs):
        steps, step_time, t_all = 0, 0.0, time.perf_counter()
        for t in tasks:
            env.reset(t)
            for a in env.reference(t):
                t0 = time.perf_counter()
                env.step(a)
                step_time += time.perf_counter() - t0
                steps += 1
        step_rates.append(steps / step_time)
        total_rates.append(steps / (time.perf_counter() - t_all))
    env.close()
    return statistics.median(step_rates), statistics.median(total_rates)


def bench_model(p, runs: int, batch: int, length: int) -> tuple[float, str]:
    import torch

    from jerp.policy.model import load_policy, set_threads

    threads = set_threads(p.policy.threads)
    policy = load_policy(p.policy.model, ROOT / ".cache/models", p.policy.dtype)
    ids = torch.randint(100, 20000, (batch, length))
    with torch.no_grad():
        policy.model(input_ids=ids[:1, :32])  # warm-up
        rates = []
        for _ in range(runs):
            t0 = time.perf_counter()
            policy.model(input_ids=ids)
            rates.append(batch * length / (time.perf_counter() - t0))
    return statistics.median(rates), f"{policy.dtype}, {threads} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--games", type=int, default=4)
    a = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    root = resolve_data_root(p.env.data_dir, os.environ, ROOT)
    step_rate, total_rate = bench_env(root, a.games, a.runs)
    print(f"env: {step_rate:.1f} steps/s (step only), {total_rate:.1f} steps/s with resets "
          f"[median of {a.runs} runs, {a.games} valid_unseen walkthroughs]")
    tok_rate, how = bench_model(p, a.runs, batch=8, length=256)
    print(f"model: {tok_rate:.0f} tokens/s forward, batch 8 x 256 [{how}, median of {a.runs}]")


if __name__ == "__main__":
    main()
