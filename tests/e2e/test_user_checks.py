"""What a user meets after `make run` on the tiny preset: every stage's output, metrics,
a no-op re-run, the rule pool's versions, the MLflow and Prefect records, and a bad
param refused with the outputs kept (one copy of the finished project for the module:
each test leaves it as it found it)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tiny import copy_project, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def checked(pristine, tmp_path_factory) -> Path:
    return copy_project(pristine, tmp_path_factory.mktemp("checks") / "proj")


def test_repro_writes_every_stage_output(checked):
    for rel in ("data/tasks.json", "data/references.jsonl", "data/iter_0/rules.json",
                "data/iter_0/adapter/adapter.json", "data/iter_1/adapter/adapter_model.safetensors",
                "metrics/train_0.json", "metrics/train_1.json", "metrics/rollout_1.json",
                "data/iter_0/eval.jsonl", "data/iter_1/rollouts.jsonl",
                "data/iter_1/proposals.jsonl", "data/iter_1/rules.json",
                "data/iter_1/eval.jsonl", "metrics/iter_0.json", "metrics/iter_1.json",
                "reports/index.md", "reports/success.png", "reports/iterations.csv"):
        assert (checked / rel).exists(), rel
    evals = [json.loads(x) for x in (checked / "data/iter_0/eval.jsonl").read_text().splitlines()]
    assert len(evals) == 1 and all(1 <= e["n_steps"] <= 4 for e in evals)
    assert all(e["steps"][0]["observation"] for e in evals)


def test_metrics_show_success_per_task_type(checked):
    out = run(["dvc", "metrics", "show", "--json"], checked).stdout
    assert "success_by_type" in out and "pick_heat_then_place_in_recep" in out


def test_rerun_is_a_no_op(checked):
    out = run(["dvc", "repro"], checked).stdout
    assert "up to date" in out.lower()


def test_reflection_changed_the_pool(checked):
    props = (checked / "data/iter_1/proposals.jsonl").read_text().splitlines()
    assert props, "the reflector proposed nothing for failed rollouts"
    diff = json.loads(run(["jerp", "rules", "diff", "0", "1", "--json"], checked).stdout)
    assert diff["added"], diff
    shown = run(["jerp", "rules", "show", "--iteration", "1"], checked).stdout
    assert diff["added"][0]["id"] in shown


def test_runs_are_in_mlflow_and_prefect(checked):
    con = sqlite3.connect(checked / "mlflow.db")
    names = {r[0] for r in con.execute("select name from runs")}
    assert {"prepare", "warmstart@0", "evaluate@0", "rollout@1", "revise@1", "finetune@1",
            "evaluate@1"} <= names
    keys = {r[0] for r in con.execute("select key from metrics")}
    assert "success" in keys and "rules" in keys
    pdb = checked / ".prefect" / "prefect.db"
    flows = {r[0] for r in sqlite3.connect(pdb).execute("select name from flow")}
    assert {"prepare", "warmstart", "evaluate", "rollout", "reflect", "revise", "finetune",
            "report"} <= flows


def test_bad_params_fail_cleanly_and_keep_outputs(checked):
    before = (checked / "data/iter_0/eval.jsonl").read_text()
    params = checked / "params.yaml"
    good = params.read_text()
    params.write_text(good.replace("mode: rank", "mode: beam"))
    try:
        res = run(["dvc", "repro"], checked, check=False)
    finally:
        params.write_text(good)
    assert res.returncode != 0
    assert "policy.mode" in res.stderr + res.stdout and "'beam'" in res.stderr + res.stdout
    assert (checked / "data/iter_0/eval.jsonl").read_text() == before


def test_rules_diff_reads_a_git_revision(checked):
    """Versions at a git revision come from dvc.lock + the DVC cache (via dvc.api)."""
    here = json.loads(run(["jerp", "rules", "diff", "0", "1", "--json"], checked).stdout)
    at_rev = json.loads(run(["jerp", "rules", "diff", "HEAD:0", "HEAD:1", "--json"],
                            checked).stdout)
    assert at_rev == here
    bad = run(["jerp", "rules", "diff", "HEAD:0", "nope"], checked, check=False)
    assert bad.returncode != 0 and "REV:I" in bad.stderr
