"""Episodes spread over task runners: the chunking and thread arithmetic, the
reference-state metrics, and the same trajectories whichever runner plays them
(real ALFWorld games, the real model, sampled decisions)."""

from __future__ import annotations

import pytest
from slot_fixtures import ScriptedStepMemory

from jerp.config import parse_params
from jerp.envs.alfworld import list_tasks
from jerp.jobs import AgentSpec
from jerp.metrics import expert_metrics
from jerp.policy.rollout import EpisodeSpec
from jerp.policy.scoring import rank_of
from jerp.runners import chunks, worker_threads
from jerp.stages.evaluate import wrong_types


def test_chunks_cover_range_in_order_and_balance():
    assert chunks(0, 2) == []
    assert chunks(12, 2) == [(0, 3), (3, 6), (6, 9), (9, 12)]  # two per worker
    assert chunks(5, 2) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert chunks(3, 4) == [(0, 1), (1, 2), (2, 3)]  # never an empty chunk
    assert chunks(10, 2, size=4) == [(0, 4), (4, 7), (7, 10)]
    for n in range(1, 30):
        for w in (1, 2, 3, 8):
            r = chunks(n, w)
            assert r[0][0] == 0 and r[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(r, r[1:], strict=False))
            sizes = [b - a for a, b in r]
            assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_worker_threads_never_oversubscribe():
    assert worker_threads(2, 2) == 1
    assert worker_threads(2, 1) == 2
    assert worker_threads(16, 3) == 5
    assert worker_threads(2, 8) == 1
    assert worker_threads(2, 2, requested=3) == 3  # an explicit setting wins


def test_rank_of_matches_greedy_choice():
    vals = [-3.0, -1.0, -1.0, -7.0]
    assert [rank_of(vals, i) for i in range(4)] == [3, 1, 2, 4]
    assert max(range(4), key=vals.__getitem__) == 1  # greedy takes the first of a tie


def test_expert_metrics_hand_computed():
    rows = [
        {"task_type": "a", "rank": {"shown": 1, "none": 2, "wrong": 1}},
        {"task_type": "a", "rank": {"shown": 2, "none": 4, "wrong": 1}},
        {"task_type": "b", "rank": {"shown": 1, "none": 1, "wrong": 5}},
        {"task_type": "b", "rank": {"shown": 4, "none": 1, "wrong": 2}},
    ]
    m = expert_metrics(rows)
    assert m["expert_states"] == 4
    assert m["expert_top1"] == 0.5
    assert m["expert_mrr"] == round((1 + 0.5 + 1 + 0.25) / 4, 4)
    assert m["expert_top1_by_type"] == {"a": 0.5, "b": 0.5}
    assert m["expert_mrr_by_type"] == {"a": 0.75, "b": 0.625}
    assert m["expert_top1_none"] == 0.5 and m["expert_mrr_none"] == round(2.75 / 4, 4)
    assert m["expert_top1_wrong"] == 0.5 and m["expert_mrr_wrong"] == round(2.7 / 4, 4)
    only = expert_metrics([{"task_type": "a", "rank": {"shown": 3}}])
    assert only["expert_top1"] == 0.0 and "expert_top1_none" not in only


def test_wrong_types_give_every_type_another_one():
    w = wrong_types(["b", "a", "c", "a"])
    assert w == {"a": "b", "b": "c", "c": "a"}
    assert wrong_types(["a"]) == {"a": ""}  # alone: no other type's rules exist


def _params(alf_root, model_cache, kind: str, threads: int = 1):
    """One torch thread and one episode per chunk everywhere: a decision then runs the same
    kernels on the same shapes whichever runner plays it, so its numbers are the same bits
    on every CPU. (On a CPU with AMX, bf16 numbers change with the thread count and the
    batch: docs/scale-out.md, "Same trajectories on every runner".)"""
    return parse_params({
        "env": {"data_dir": str(alf_root), "max_steps": 3},
        "policy": {"cache_dir": str(model_cache), "temperature": 1.0, "history": 2,
                   "threads": threads},
        "runner": {"kind": kind, "workers": 2, "chunk_episodes": 1},
    })


def _play(p, root, specs, step_memory=None):
    from jerp.jobs import play_episodes

    return play_episodes(p, root, AgentSpec(None, seed=5), specs, {"stage": "t"}, None, "t",
                         step_memory=step_memory)


def _in_flow(p, root, specs, step_memory=None):
    from prefect import flow

    from jerp.runners import task_runner

    @flow(name="runner-test", task_runner=task_runner(p))
    def run():
        return _play(p, root, specs, step_memory)

    return run()


def _fingerprint(trajs):
    return [(t.task_id, t.episode, [(s.action, round(s.prob, 4)) for s in t.steps])
            for t in trajs]


@pytest.fixture(scope="module")
def prefect_server(prefect_api):
    """This module's flows report to the test session's Prefect server (conftest)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api}):
        yield


@pytest.fixture(scope="module")
def episodes(alf_root, model_cache, tmp_path_factory):
    # One game, two sampled episodes: a chunk each
    tasks = list_tasks(alf_root, "eval_out")[:1]
    specs = [EpisodeSpec(t, g) for t in tasks for g in range(2)]
    root = tmp_path_factory.mktemp("runner")
    ref = _play(_params(alf_root, model_cache, "local"), root, specs)
    # the two episodes differ (sampled), so a runner playing them alike is not vacuous
    assert _fingerprint(ref)[0][2] != _fingerprint(ref)[1][2]
    return root, specs, ref


@pytest.mark.slow
def test_process_pool_plays_the_same_episodes_with_a_memory_slot(
        episodes, alf_root, model_cache, prefect_server):
    """A process pool plays the same episodes as the stage's own process, and a Job
    carrying a step memory (the scripted test fixture) pickles to the workers, which
    record the same subgoals and memories too (the pool without a memory:
    test_finished_chunks_are_not_replayed's first run)."""
    root, specs, _ = episodes
    memory = ScriptedStepMemory(per_subgoal=2)

    def seen(trajs):
        return _fingerprint(trajs) + [(t.subgoals, [(s.subgoal, s.memories) for s in t.steps])
                                      for t in trajs]

    ref = _play(_params(alf_root, model_cache, "local"), root, specs[:2], memory)
    assert ref[0].subgoals == ["find the object", "take the object"]  # 3 steps, 2 per subgoal
    got = _in_flow(_params(alf_root, model_cache, "process"), root, specs[:2], memory)
    assert seen(got) == seen(ref)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_cluster_plays_the_same_episodes(kind, episodes, alf_root, model_cache, prefect_server):
    """A local Dask cluster and a local Ray cluster (prefect-dask, prefect-ray)."""
    root, specs, ref = episodes
    got = _in_flow(_params(alf_root, model_cache, kind), root, specs)
    assert _fingerprint(got) == _fingerprint(ref)


def test_fingerprint_follows_what_results_depend_on(tmp_path, alf_root, model_cache):
    from jerp.jobs import Job, fingerprint

    rules = tmp_path / "rules.json"
    rules.write_text('{"a": 1}')
    p = _params(alf_root, model_cache, "process")
    job = Job(p, tmp_path, AgentSpec(None, seed=1), rules, {"stage": "t"}, "t")
    base = fingerprint(job, ["g1"])
    assert fingerprint(job, ["g1"]) == base  # stable
    assert fingerprint(job, ["g2"]) != base
    assert fingerprint(Job(p, tmp_path, AgentSpec(None, seed=2), rules, {"stage": "t"}, "t"),
                       ["g1"]) != base
    p2 = p.model_copy(update={"env": p.env.model_copy(update={"max_steps": 4})})
    assert fingerprint(Job(p2, tmp_path, AgentSpec(None, seed=1), rules, {"stage": "t"}, "t"),
                       ["g1"]) != base
    rules.write_text('{"a": 2}')  # same path, new pool: new key
    assert fingerprint(job, ["g1"]) != base
    base = fingerprint(job, ["g1"])
    slot = Job(p, tmp_path, AgentSpec(None, seed=1), rules, {"stage": "t"}, "t",
               step_memory=ScriptedStepMemory(per_subgoal=2))
    assert fingerprint(slot, ["g1"]) != base  # a step memory changes what is played
    assert fingerprint(slot, ["g1"]) == fingerprint(
        Job(p, tmp_path, AgentSpec(None, seed=1), rules, {"stage": "t"}, "t",
            step_memory=ScriptedStepMemory(per_subgoal=2)), ["g1"])  # equal one: same key
    assert fingerprint(slot, ["g1"]) != fingerprint(
        Job(p, tmp_path, AgentSpec(None, seed=1), rules, {"stage": "t"}, "t",
            step_memory=ScriptedStepMemory(per_subgoal=3)), ["g1"])


@pytest.mark.slow
def test_finished_chunks_are_not_replayed(episodes, alf_root, model_cache, prefect_server,
                                          tmp_path):
    """A stage re-run after a crash takes the chunks that had finished from Prefect's
    result store: here the whole first run finished, so the second plays nothing."""
    from prefect import flow
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    from jerp.jobs import Job, fingerprint, play_chunk
    from jerp.runners import spread, task_runner

    root, specs, ref = episodes
    p = _params(alf_root, model_cache, "process")
    job = Job(p, root, AgentSpec(None, seed=5), None, {"stage": "t"}, "t")
    calls = [(job, specs[a:b], a) for a, b in chunks(len(specs), 2)]
    key = fingerprint(job, [(s.task.task_id, s.episode) for s in specs])

    @flow(name="cache-test", task_runner=task_runner(p))
    def go(key, calls):
        stats: dict = {}
        parts = spread(play_chunk, calls, name="t", size=len, key=key, stats=stats)
        return [t for part in parts for t in part], stats

    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: tmp_path / "results"}):
        first, s1 = go(key, calls)
        second, s2 = go(key, calls)
        # anything it depends on changed: a new key, nothing reused (its first chunk shows it)
        _, s3 = go(key[::-1], calls[:1])
    assert s1["cached"] == 0 and s2["cached"] == len(calls) and s3["cached"] == 0
    assert _fingerprint(first) == _fingerprint(second) == _fingerprint(ref)


def test_thread_plan_per_worker_and_inline(alf_root, model_cache):
    from jerp import runners
    from jerp.runners import available_cores

    cores = available_cores()
    p = _params(alf_root, model_cache, "process", threads=0)  # 2 workers, threads by cores
    assert runners.threads(p) == (max(1, cores // 2), cores)
    local = _params(alf_root, model_cache, "local", threads=0)
    assert runners.workers(local) == 1 and runners.threads(local) == (cores, cores)
