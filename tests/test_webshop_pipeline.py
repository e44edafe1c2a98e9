"""WebShop through the same stages as ALFWorld (prepare -> references -> warmstart ->
rollout -> reflect -> revise -> finetune -> evaluate), in-process on a tiny configuration
with the real model."""

import pytest

from jerp import paths
from jerp.config import parse_params
from jerp.policy.experience import rollout_diversity
from jerp.records import read_proposals, read_snapshot, read_tasks, read_trajectories
from jerp.stages import (
    evaluate,
    finetune,
    prepare,
    references,
    reflect,
    revise,
    rollout,
    warmstart,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, root, model_cache):
    from jerp.envs.webshop import resolve_data_dir

    p = parse_params({
        "env": {"name": "webshop", "data_dir": str(resolve_data_dir(None, root)),
                "max_steps": 3, "train_per_type": 1, "eval_per_type": 1,
                "task_types": ["beauty", "grocery"]},
        "policy": {"cache_dir": str(model_cache), "batch_envs": 2, "history": 1},
        "rollout": {"group_size": 2},
        # Wiring, not learning: a few optimizer steps each (the caps stop them).
        "warmstart": {"games_per_type": 1, "epochs": 1, "max_minutes": 0.2},
        "finetune": {"max_minutes": 0.2, "rft_references": 1},
        "iterations": {1: {"prev": 0}}, "eval_iterations": [0, 1],
    })
    d = tmp_path_factory.mktemp("webshop")
    prepare.run(p, d)
    references.run(p, d)
    warmstart.run(p, d)
    # (no evaluation at 0: nothing downstream reads it, and evaluate@1 plays the same way)
    rollout.run(p, d, 1, 0)
    reflect.run(p, d, 1, 0)
    revise.run(p, d, 1, 0)
    finetune.run(p, d, 1, 0)
    m1 = evaluate.run(p, d, 1)
    return d, m1


def test_tasks_and_references(run_dir):
    d, _ = run_dir
    tl = read_tasks(d / paths.tasks_file())
    assert tl.env == "webshop"
    assert {t.task_type for t in tl.tasks("train")} == {"beauty", "grocery"}
    refs = read_trajectories(d / paths.references_file())
    assert len(refs) == 6 and all(r.reward > 0 for r in refs)  # train, eval, warm start
    assert refs[0].steps[0].action.startswith("search[")


def test_evaluation_reports_score_and_success(run_dir):
    d, m1 = run_dir
    assert {"score", "success", "success_by_type", "expert_top1"} <= set(m1)
    trajs = read_trajectories(d / paths.eval_file(1))
    assert len(trajs) == 2 and all(1 <= t.n_steps <= 3 for t in trajs)
    assert all(t.steps[0].action.startswith("search[") for t in trajs)


def test_reflection_on_webshop_failures(run_dir):
    d, _ = run_dir
    props = read_proposals(d / paths.proposals_file(1))
    failed = {t.traj_id for t in read_trajectories(d / paths.rollouts_file(1)) if not t.won}
    snap = read_snapshot(d / paths.rules_file(1))
    if not failed:  # jerp reflects on failures only: nothing to contrast, nothing proposed
        assert props == [] and snap.rules == []
        return
    # the pool starts empty, so reflection on a failure must add rules, each from a failure
    adds = [p for p in props if p.accepted and p.op == "ADD"]
    assert adds and {p.evidence.failed for p in adds} <= failed, props
    assert snap.rules and all(r.provenance[0] in failed for r in snap.rules)


def test_webshop_policy_is_trained_and_chained(run_dir):
    import json

    d, _ = run_dir
    w0 = json.loads((d / paths.adapter_dir(0) / "adapter.json").read_text())
    w1 = json.loads((d / paths.adapter_dir(1) / "adapter.json").read_text())
    assert w0["kind"] == "lora" and w0["stats"]["decisions"] > 0
    assert w1["stage"] == "finetune" and w1["parent"].endswith("iter_0/adapter")
    trajs = read_trajectories(d / paths.eval_file(1))
    assert all(t.policy_version.endswith("iter_1/adapter") for t in trajs)
    # the rollout stage records the diversity of the rollouts it wrote (the computation
    # itself is hand-checked in test_grpo.py)
    stats = json.loads((d / paths.rollout_stats_file(1)).read_text())
    diversity = rollout_diversity(read_trajectories(d / paths.rollouts_file(1)))
    assert {k: stats[k] for k in diversity} == diversity
    assert diversity["identical_group_share"] is not None  # group_size 2: groups to compare
