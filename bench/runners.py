"""Benchmark: episodes per second on each task runner, quiet and beside a busy neighbour.

    python bench/runners.py [--games 8] [--steps 15] [--runs 1] [--adapter data/iter_0/adapter]
                            [--runners local,local1,process,dask,ray] [--neighbour]

Plays the same eval_out games with the same seed on each runner (params
`runner`): `local` (the stage's process, all cores' threads), `local1` (the
stage's process, one thread), `process` (a pool of single-thread worker
processes, the default), `dask` (a LocalCluster of single-thread workers) and
`ray` (a local Ray instance).
Sampled at T = 1 by default, as rollouts are. `--neighbour` also runs each
with a busy loop pinned to one core (another job on the machine), to show
whether throughput collapses (torch threads waiting on the thread that lost
its core). Prints median episodes/s and decisions/s, and whether every runner
played the same trajectories. Not a test: timings depend on the machine's load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

from jerp.runtime import configure

ROOT = Path(__file__).resolve().parents[1]
configure(ROOT)

from prefect import flow  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from jerp.config import parse_params  # noqa: E402
from jerp.envs.alfworld import list_tasks, resolve_data_root  # noqa: E402
from jerp.jobs import AgentSpec, play_episodes  # noqa: E402
from jerp.policy.rollout import EpisodeSpec  # noqa: E402
from jerp.runners import task_runner  # noqa: E402

KINDS = {"local": ("local", 0), "local1": ("local", 1), "process": ("process", 0),
         "dask": ("dask", 0), "ray": ("ray", 0)}


def busy(core: int) -> None:
    os.sched_setaffinity(0, {core})
    while True:
        pass


def run_once(kind: str, args, specs, tag: str) -> tuple[float, list]:
    """`tag` names the timed run: chunks are cached under a key of everything they depend
    on (a re-run after a crash takes them from there), so each timed run needs its own."""
    runner, threads = KINDS[kind]
    p = parse_params({
        "env": {"data_dir": str(args.data), "max_steps": args.steps},
        "policy": {"temperature": args.temperature, "threads": threads},
        "runner": {"kind": runner},
    })
    adapter = Path(args.adapter).resolve() if args.adapter else None

    @flow(name=f"bench-{kind}", task_runner=task_runner(p))
    def go():
        return play_episodes(p, ROOT, AgentSpec(adapter, seed=7), specs,
                             {"stage": "bench", "run": tag},
                             None, kind)

    t0 = time.perf_counter()
    trajs = go()
    return time.perf_counter() - t0, trajs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--games", type=int, default=8)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--adapter", default=None, help="e.g. data/iter_0/adapter (warm start)")
    ap.add_argument("--runners", default="local,local1,process,dask")
    ap.add_argument("--neighbour", action="store_true", help="also beside a busy loop")
    args = ap.parse_args()
    args.data = resolve_data_root(None, os.environ, ROOT)
    specs = [EpisodeSpec(t) for t in list_tasks(args.data, "eval_out")[: args.games]]
    rows, prints = [], {}
    settings = [False, True] if args.neighbour else [False]
    with prefect_test_harness(server_startup_timeout=120):
        for loaded in settings:
            hog = None
            if loaded:
                hog = mp.get_context("spawn").Process(target=busy, args=(0,), daemon=True)
                hog.start()
            for kind in args.runners.split(","):
                times, decisions = [], 0
                for r in range(args.runs):
                    dt, trajs = run_once(kind, args, specs, f"{os.getpid()}-{loaded}-{r}")
                    times.append(dt)
                    decisions = sum(t.n_steps for t in trajs)
                    prints[kind] = [[s.action for s in t.steps] for t in trajs]
                med = statistics.median(times)
                rows.append((kind, "busy core 0" if loaded else "quiet", len(specs) / med,
                             decisions / med, med))
                print(f"{kind:8s} {rows[-1][1]:12s} {rows[-1][2]:6.3f} ep/s "
                      f"{rows[-1][3]:6.2f} decisions/s  ({med:.1f} s)", file=sys.stderr)
            if hog:
                hog.terminate()
    print(f"\n{len(specs)} eval_out games, {args.steps} steps max, T={args.temperature}, "
          f"{len(os.sched_getaffinity(0))} cores, median of {args.runs}")
    print(f"{'runner':8s}  {'setting':12s}  {'episodes/s':>10s}  {'decisions/s':>11s}  "
          f"{'seconds':>7s}")
    for kind, setting, eps, dps, med in rows:
        print(f"{kind:8s}  {setting:12s}  {eps:10.3f}  {dps:11.2f}  {med:7.1f}")
    same = len({repr(v) for v in prints.values()}) == 1
    print(f"same trajectories on every runner: {same}")


if __name__ == "__main__":
    main()
