"""Spreading a stage's chunks of work over a Prefect task runner (params `runner`).

Inside a flow each chunk is a Prefect task, so the UI shows the stage's progress:
a task run per chunk, a log line as each ends (with the running success), and
a progress artifact. Outside a flow (tests, the CLI) the chunks run one after
another in this process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from jerp.config import Params


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


def worker_threads(cores: int, workers: int, requested: int = 0) -> int:
    """torch threads per worker: `requested`, else the cores split among the workers.

    More threads than cores collapses throughput (18x measured here beside a busy
    neighbour), so workers never share a core's worth of threads."""
    if requested:
        return requested
    return max(1, cores // max(1, workers))


def chunks(n: int, workers: int, size: int = 0) -> list[tuple[int, int]]:
    """[start, end) ranges covering range(n): `size` items each, or (size 0) about two
    chunks per worker, balanced to within one item."""
    if n <= 0:
        return []
    k = -(-n // size) if size else min(n, 2 * max(1, workers))
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        end = start + base + (i < extra)
        out.append((start, end))
        start = end
    return out


def workers(p: Params) -> int:
    return 1 if p.runner.kind == "local" else (p.runner.workers or available_cores())


def threads(p: Params) -> tuple[int, int]:
    """torch threads (for each worker that plays chunks in a flow, for this process when
    the chunks run here one after another: outside a flow, all its cores)."""
    cores = available_cores()
    return (worker_threads(cores, workers(p), p.policy.threads),
            worker_threads(cores, 1, p.policy.threads))


def set_threads(n: int) -> None:
    """Size torch's thread pool in this process, if torch is loaded here. It is by the
    time a chunk runs whenever the chunk's function uses it (its module imports torch);
    the reference replays never load it, and this module never does."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def task_runner(p: Params):
    """The Prefect task runner named by params `runner` (for `@flow(task_runner=...)`)."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    r = p.runner
    if r.kind == "local":
        return ThreadPoolTaskRunner(max_workers=1)
    if r.kind == "process":
        return ProcessPoolTaskRunner(max_workers=workers(p), initializer=set_threads,
                                     initargs=(threads(p)[0],))
    if r.kind == "ray":
        return _ray(p)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise SystemExit("runner.kind = 'dask' needs prefect-dask (a dependency in pyproject.toml: "
                         "`make install`)") from None
    if r.address:
        return DaskTaskRunner(address=r.address)
    # Single-threaded worker processes: torch sizes its own threads (set_threads).
    return DaskTaskRunner(cluster_kwargs={
        "n_workers": workers(p), "threads_per_worker": 1, "processes": True,
        "dashboard_address": None})


def _ray(p: Params):
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        raise SystemExit("runner.kind = 'ray' needs prefect-ray (a dependency in pyproject.toml: "
                         "`make install`)") from None
    if p.runner.address:
        return RayTaskRunner(address=p.runner.address)
    # A local Ray instance with one CPU per worker: at most `workers` chunks at once. Its
    # workers import what this process imports (as multiprocessing's spawn does).
    path = os.pathsep.join(x for x in sys.path if x)
    return RayTaskRunner(init_kwargs={
        "num_cpus": workers(p), "include_dashboard": False, "log_to_driver": False,
        "runtime_env": {"env_vars": {"PYTHONPATH": path}}})


def in_flow() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


def spread(
    fn: Callable[..., list], calls: Sequence[tuple], *, name: str, size: Callable[[list], int],
    tally: Callable[[list], str] | None = None, threads: tuple[int, int] = (0, 0),
    key: str | None = None, stats: dict | None = None,
) -> list[list]:
    """[fn(*args) for args in calls], as tasks on the flow's task runner.

    `threads`: (per worker in a flow, in this process outside one), see `threads`.
    `size(result)` counts a chunk's items for the progress figures; `tally(all results
    so far)` says how the stage is doing (e.g. the running success) in each log line.
    `key`: a fingerprint of everything the results depend on (workers.fingerprint).
    With it each chunk's result is persisted in Prefect's result store under that key,
    so a stage re-run after a crash (kill -9, out of memory) takes the chunks that had
    finished from there and plays only the rest: its outputs are still written whole,
    at the end. `stats` (optional) gets the number of chunks served that way.
    """
    threads_each, threads_inline = threads
    if not in_flow():
        if threads_inline:
            set_threads(threads_inline)
        return [fn(*args) for args in calls]
    from prefect import get_run_logger, task
    from prefect.artifacts import create_progress_artifact, update_progress_artifact
    from prefect.cache_policies import NONE
    from prefect.futures import as_completed

    log = get_run_logger()
    n = len(calls)
    art_key = "".join(c if c.isalnum() else "-" for c in name.lower())
    art = create_progress_artifact(0.0, key=art_key, description=f"{name}: chunks done")
    if key:
        run = task(_threaded, name=name, cache_key_fn=_chunk_key, persist_result=True)
    else:
        run = task(_threaded, name=name, cache_policy=NONE)
    futures = [run.with_options(task_run_name=f"{name} {k + 1}/{n}")
               .submit(fn, threads_each, args, f"{art_key}-{key}-{k}-{n}" if key else None)
               for k, args in enumerate(calls)]
    index = {id(f): k for k, f in enumerate(futures)}
    results: list[Any] = [None] * n
    done = items = cached = 0
    for f in as_completed(futures):
        k = index[id(f)]
        results[k] = f.result()
        done += 1
        cached += f.state.name == "Cached"
        items += size(results[k])
        note = f"; {tally([r for r in results if r is not None])}" if tally else ""
        log.info(f"{name}: chunk {k + 1}/{n} done ({size(results[k])}), {done}/{n} chunks, "
                 f"{items} items{note}")
        update_progress_artifact(art, 100.0 * done / n)
    if cached:
        log.info(f"{name}: {cached}/{n} chunks were finished by an earlier run (result cache)")
    if stats is not None:
        stats["cached"] = cached
    return results


def _chunk_key(context, parameters: dict) -> str | None:
    return parameters.get("cache_key")


def _threaded(fn: Callable[..., list], threads_each: int, args: tuple,
              cache_key: str | None = None) -> list:
    if threads_each:
        set_threads(threads_each)
    return fn(*args)
