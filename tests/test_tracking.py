"""tracking on a real sqlite MLflow store: one parent per execution, curves on the parent."""

from __future__ import annotations

import pytest

from jerp import tracking

PARAMS = {"run": {"method": "jerp", "seed": 0}, "eval_iterations": [0, 1]}


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no git here: no commit tag; artifacts under ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-a")
    import mlflow

    yield mlflow.MlflowClient()


def _runs(client):
    exp = client.get_experiment_by_name(tracking.EXPERIMENT)
    return client.search_runs([exp.experiment_id], run_view_type=3)


def test_pipeline_execution_is_one_parent_closed_by_the_report(store, tmp_path):
    for i, success in ((0, 0.25), (1, 0.5)):
        with tracking.stage_run("evaluate", i, PARAMS) as ml:
            tracking.log_metrics(ml, {"success": success, "by": {"t": 1}, "ok": True}, i,
                                 on_parent=True)
    report = tmp_path / "index.md"
    report.write_text("# report\n")
    with tracking.stage_run("report", None, PARAMS) as ml:
        # success@0 and @1 are on the parent already: only the new key and step are logged
        n = tracking.log_curves(ml, {0: {"success": 0.25, "rules": 0},
                                     1: {"success": 0.5, "rules": 3}})
        assert n == 2
        parent = tracking.close_parent(ml, {"report": [report, tmp_path / "missing.png"]})

    runs = _runs(store)
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    children = [r for r in runs if tracking.PARENT_TAG in r.data.tags]
    assert [p.info.run_id for p in parents] == [parent]
    assert {c.data.tags[tracking.PARENT_TAG] for c in children} == {parent}
    assert sorted(c.info.run_name for c in children) == ["evaluate@0", "evaluate@1", "report"]
    assert all(c.info.status == "FINISHED" for c in children)
    p = store.get_run(parent)
    assert p.info.status == "FINISHED"
    assert p.data.tags[tracking.DVC_EXP_TAG] == "exp-a" and p.info.run_name == "exp-a"
    assert [(m.step, m.value) for m in store.get_metric_history(parent, "success")] == \
        [(0, 0.25), (1, 0.5)]
    assert [m.step for m in store.get_metric_history(parent, "by.t")] == [0, 1]
    assert "ok" not in p.data.metrics  # booleans are not metrics
    assert [a.path for a in store.list_artifacts(parent, "report")] == ["report/index.md"]
    exp = store.get_experiment_by_name(tracking.EXPERIMENT)
    assert exp.tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"

    # the next execution (same params, commit and experiment) gets a new parent
    with tracking.stage_run("evaluate", 0, PARAMS):
        pass
    parents = [r for r in _runs(store) if tracking.PARENT_TAG not in r.data.tags]
    assert len(parents) == 2 and {r.info.status for r in parents} == {"FINISHED", "RUNNING"}


def test_a_failed_stage_leaves_the_parent_open_for_the_rerun(store):
    with pytest.raises(RuntimeError), tracking.stage_run("finetune", 1, PARAMS):
        raise RuntimeError("boom")
    with tracking.stage_run("finetune", 1, PARAMS):
        pass
    runs = _runs(store)
    parents = [r for r in runs if tracking.PARENT_TAG not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "RUNNING"
    assert sorted(r.info.status for r in runs if r not in parents) == ["FAILED", "FINISHED"]


def test_pipeline_id_depends_on_commit_and_experiment():
    a = tracking.pipeline_id(PARAMS, "abc", None)
    assert a == tracking.pipeline_id(PARAMS, "abc", None)
    assert len({a, tracking.pipeline_id(PARAMS, "abd", None),
                tracking.pipeline_id(PARAMS, "abc", "exp")}) == 3


def test_runs_of_killed_stages_are_ended_killed_by_the_next_stage(store):
    """A stage killed with -9 leaves its run RUNNING; the next stage ends it KILLED, and
    leaves the run of a live stage process (a queued experiment beside it) alone."""
    import subprocess
    import sys

    from jerp import crashes

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = crashes.Owner(crashes.this_process().host, gone.pid, 1.0)
    exp = store.get_experiment_by_name(tracking.EXPERIMENT) or store.get_experiment(
        store.create_experiment(tracking.EXPERIMENT))
    killed = store.create_run(exp.experiment_id, run_name="rollout@1",
                              tags={tracking.OWNER_TAG: crashes.owner_tag(dead)})
    live = store.create_run(exp.experiment_id, run_name="rollout@2", tags={
        tracking.OWNER_TAG: crashes.owner_tag(crashes.this_process())})
    with tracking.stage_run("revise", 1, PARAMS):
        pass
    assert store.get_run(killed.info.run_id).info.status == "KILLED"
    assert store.get_run(live.info.run_id).info.status == "RUNNING"
