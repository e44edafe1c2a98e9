"""A workspace experiment as the README shows it, on a copy of the finished tiny project."""

from __future__ import annotations

import json

import pytest
from tiny import run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_exp_run_switches_method_without_an_activated_venv(project, prefect_api):
    """`.venv/bin/dvc exp run -S run.method=...` as the README shows it: stage commands
    find the project's interpreter themselves. The method is jerp_h2r, whose warm start
    is trained on its slotted prompts without being asked (prepare derives that from
    run.method), so the warm start runs again. It also runs H2R's hierarchy through
    every stage: the
    executor's subgoal slot in rollouts, hindsight reflection into planning and execution
    memories, and a policy update trained on the prompts with their slots. The stages
    report to a running Prefect server (PREFECT_API_URL, as beside `make prefect-ui`)."""
    from jerp.records import read_snapshot, read_trajectories

    dvc = str(project / ".venv" / "bin" / "dvc")
    # No DAgger round in this warm start: the pristine project's warm start ran one, and
    # it is not what is asked here (~50 s of the test on one core).
    res = run([dvc, "exp", "run", "-S", "run.method=jerp_h2r", "-S", "eval.expert_states=false",
               "-S", "warmstart.dagger_rounds=0"],
              project, activated=False, PREFECT_API_URL=prefect_api)
    out = res.stdout + res.stderr
    assert "Running stage 'finetune@1'" in out and "Running stage 'warmstart'" in out
    assert json.loads((project / "data/warmstart_settings.json").read_text()) == {
        "subgoal_slots": True, "plan_choices": True}
    rollouts = read_trajectories(project / "data/iter_1/rollouts.jsonl")
    assert rollouts and all(t.subgoals and t.steps[0].slot.startswith("Current subgoal: ")
                            for t in rollouts)
    levels = {r.level for r in read_snapshot(project / "data/iter_1/rules.json").rules}
    assert levels == {"planning", "execution"}
    manifest = json.loads((project / "data/iter_1/adapter/adapter.json").read_text())
    assert manifest["stage"] == "finetune"
    evals = read_trajectories(project / "data/iter_1/eval.jsonl")
    assert evals and all(s.subgoal is not None for t in evals for s in t.steps)
    table = run([dvc, "exp", "show", "--csv"], project, activated=False).stdout
    assert "jerp_h2r" in table and "jerp" in table
