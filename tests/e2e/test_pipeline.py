"""The real pipeline on the tiny preset: `dvc repro` through Prefect flows into MLflow.

One copy of the project in a temp folder, then a sequence of checks in the
order a user would meet them (the pipeline takes a few minutes, so it runs once).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path, check: bool = True,
       activated: bool = True) -> subprocess.CompletedProcess:
    """Run a command in the project copy; `activated=False`: the venv is not on PATH (as
    a user typing `.venv/bin/dvc ...` in a fresh clone)."""
    path = os.environ["PATH"]
    if activated:
        path = f"{BIN}{os.pathsep}{path}"
    else:
        path = os.pathsep.join(p for p in path.split(os.pathsep) if Path(p) != BIN)
    env = {**os.environ, "PATH": path}
    env.pop("VIRTUAL_ENV", None)
    for k in ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        env.pop(k, None)  # the copy gets its own, inside the project
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                             f"{res.stdout[-3000:]}\n{res.stderr[-5000:]}")
    return res


@pytest.fixture(scope="module")
def project(tmp_path_factory, root, alf_root, model_cache):
    proj = tmp_path_factory.mktemp("jerp") / "proj"
    proj.mkdir()
    for item in ("dvc.yaml", "flows", "src", ".dvcignore"):
        src = root / item
        if src.is_dir():
            shutil.copytree(src, proj / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, proj / item)
    params = yaml.safe_load((root / "presets/tiny.yaml").read_text())
    params["env"]["data_dir"] = str(alf_root)
    params["policy"]["cache_dir"] = str(model_cache)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (proj / ".gitignore").write_text(".prefect/\nmlflow.db\n.cache/\n.venv\n")
    (proj / ".venv").symlink_to(Path(sys.prefix))  # where `make install` puts it
    sh(["git", "init", "-q"], proj)
    sh(["dvc", "init", "-q"], proj)
    sh(["dvc", "repro"], proj)
    commit(proj, "run")  # `dvc exp run` needs a commit; revisions resolve against it
    return proj


def commit(proj: Path, msg: str) -> None:
    sh(["git", "add", "-A"], proj)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", msg], proj)


def test_repro_writes_every_stage_output(project):
    for rel in ("data/tasks.json", "data/references.jsonl", "data/iter_0/rules.json",
                "data/iter_0/adapter/adapter.json", "data/iter_1/adapter/adapter_model.safetensors",
                "metrics/train_0.json", "metrics/train_1.json", "metrics/rollout_1.json",
                "data/iter_0/eval.jsonl", "data/iter_1/rollouts.jsonl",
                "data/iter_1/proposals.jsonl", "data/iter_1/rules.json",
                "data/iter_1/eval.jsonl", "metrics/iter_0.json", "metrics/iter_1.json",
                "reports/index.md", "reports/success.png", "reports/iterations.csv"):
        assert (project / rel).exists(), rel
    evals = [json.loads(x) for x in (project / "data/iter_0/eval.jsonl").read_text().splitlines()]
    assert len(evals) == 2 and all(1 <= e["n_steps"] <= 4 for e in evals)
    assert all(e["steps"][0]["observation"] for e in evals)


def test_metrics_show_success_per_task_type(project):
    out = sh(["dvc", "metrics", "show", "--json"], project).stdout
    assert "success_by_type" in out and "pick_heat_then_place_in_recep" in out


def test_rerun_is_a_no_op(project):
    out = sh(["dvc", "repro"], project).stdout
    assert "up to date" in out.lower()


def test_reflection_changed_the_pool(project):
    props = (project / "data/iter_1/proposals.jsonl").read_text().splitlines()
    assert props, "the contrastive reflector proposed nothing for failed rollouts"
    diff = json.loads(sh(["jerp", "rules", "diff", "0", "1", "--json"], project).stdout)
    assert diff["added"], diff
    shown = sh(["jerp", "rules", "show", "--iteration", "1"], project).stdout
    assert diff["added"][0]["id"] in shown


def test_runs_are_in_mlflow_and_prefect(project):
    con = sqlite3.connect(project / "mlflow.db")
    names = {r[0] for r in con.execute("select name from runs")}
    assert {"prepare", "warmstart@0", "evaluate@0", "rollout@1", "revise@1", "finetune@1",
            "evaluate@1"} <= names
    keys = {r[0] for r in con.execute("select key from metrics")}
    assert "success" in keys and "rules" in keys
    pdb = project / ".prefect" / "prefect.db"
    flows = {r[0] for r in sqlite3.connect(pdb).execute("select name from flow")}
    assert {"prepare", "warmstart", "evaluate", "rollout", "reflect", "revise", "finetune",
            "report"} <= flows


def test_bad_params_fail_cleanly_and_keep_outputs(project):
    before = (project / "data/iter_0/eval.jsonl").read_text()
    params = project / "params.yaml"
    good = params.read_text()
    params.write_text(good.replace("mode: rank", "mode: beam"))
    try:
        res = sh(["dvc", "repro"], project, check=False)
    finally:
        params.write_text(good)
    assert res.returncode != 0
    assert "policy.mode" in res.stderr + res.stdout and "'beam'" in res.stderr + res.stdout
    assert (project / "data/iter_0/eval.jsonl").read_text() == before


def test_rules_diff_reads_a_git_revision(project):
    """Versions at a git revision come from dvc.lock + the DVC cache (via dvc.api)."""
    here = json.loads(sh(["jerp", "rules", "diff", "0", "1", "--json"], project).stdout)
    at_rev = json.loads(sh(["jerp", "rules", "diff", "HEAD:0", "HEAD:1", "--json"],
                           project).stdout)
    assert at_rev == here
    bad = sh(["jerp", "rules", "diff", "HEAD:0", "nope"], project, check=False)
    assert bad.returncode != 0 and "REV:I" in bad.stderr


def test_exp_run_switches_method_without_an_activated_venv(project):
    """`.venv/bin/dvc exp run -S run.method=...` as the README shows it: stage commands
    find the project's interpreter themselves. The warm start is shared (not re-run).
    The method is jerp_h2r, so this also runs H2R's hierarchy through every stage: the
    executor's subgoal slot in rollouts, hindsight reflection into planning and execution
    memories, and a policy update trained on the prompts with their slots."""
    from jerp.records import read_snapshot, read_trajectories

    dvc = str(project / ".venv" / "bin" / "dvc")
    res = sh([dvc, "exp", "run", "-S", "run.method=jerp_h2r"], project, activated=False)
    out = res.stdout + res.stderr
    assert "Running stage 'finetune@1'" in out and "Running stage 'warmstart'" not in out
    rollouts = read_trajectories(project / "data/iter_1/rollouts.jsonl")
    assert rollouts and all(t.subgoals and t.steps[0].slot.startswith("Current subgoal: ")
                            for t in rollouts)
    levels = {r.level for r in read_snapshot(project / "data/iter_1/rules.json").rules}
    assert levels == {"planning", "execution"}
    manifest = json.loads((project / "data/iter_1/adapter/adapter.json").read_text())
    assert manifest["stage"] == "finetune"
    evals = read_trajectories(project / "data/iter_1/eval.jsonl")
    assert evals and all(s.subgoal is not None for t in evals for s in t.steps)
    table = sh([dvc, "exp", "show", "--csv"], project, activated=False).stdout
    assert "jerp_h2r" in table and "jerp" in table
