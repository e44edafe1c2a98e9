"""`jerp compare` on a real tiny git + DVC repository with two commits of hand-made results."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from report_fixtures import write_run

from jerp import cli, paths
from jerp.report import analysis, experiments
from jerp.report.load import workspace

BIN = Path(sys.executable).parent


# Both commits carry one date, so refs to them sort by name alone: commits made on
# either side of a second boundary would otherwise reorder them (a flaky CI failure).
DATE = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


def sh(args: list[str], cwd: Path) -> None:
    subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True,
                   env=os.environ | DATE)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("repo")
    sh(["git", "init", "-q"], root)
    sh(["git", "config", "user.email", "t@t"], root)
    sh(["git", "config", "user.name", "t"], root)
    sh([str(BIN / "dvc"), "init", "-q"], root)
    (root / "dvc.yaml").write_text("stages: {}\n")
    params = {"run": {"method": "react", "seed": 0}, "env": {"name": "alfworld"},
              "eval_iterations": [0, 1]}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_run(root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "react"], root)
    # the second run wins every game at iteration 1 and ranks every reference state 1st
    params["run"]["method"] = "jerp"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    lines = (root / paths.eval_file(1)).read_text().splitlines()
    won = [json.loads(x) | {"won": True} for x in lines]
    (root / paths.eval_file(1)).write_text("".join(json.dumps(g) + "\n" for g in won))
    states = json.loads((root / paths.expert_states_file(1)).read_text())
    for r in states["rows"]:
        r["rank"]["shown"] = 1
    (root / paths.expert_states_file(1)).write_text(json.dumps(states))
    m = json.loads((root / paths.metrics_file(1)).read_text())
    (root / paths.metrics_file(1)).write_text(json.dumps(m | {"success": 1.0,
                                                               "expert_top1": 1.0}))
    sh(["git", "commit", "-qam", "jerp"], root)
    return root


def _compare(repo: Path, capsys, *runs: str, table: bool = False) -> str:
    cli.cmd_compare(argparse.Namespace(root=repo, runs=list(runs), table=table, seed=0,
                                       success_at_k=False))
    return capsys.readouterr().out


def test_compare_two_revisions_reads_each_through_dvc_api(repo, capsys):
    out = _compare(repo, capsys, "HEAD~1", "HEAD")
    assert "4/6 = 0.67 (0.30-0.90)" in out and "6/6 = 1.00 (0.61-1.00)" in out
    # games g4, g5 flip to won (c = 2, b = 0): exact McNemar p = 2 / 4 = 0.5
    assert "eval success (exact McNemar): HEAD~1 0.667 vs HEAD 1.000" in out
    assert "p = 0.5): not significant" in out
    assert "reference action ranked 1st" in out


def test_table_two_has_methods_as_rows(repo):
    header, rows = experiments.table2([experiments.load_rev(repo, r) for r in ("HEAD~1", "HEAD")])
    assert header[:3] == ["method", "run", "iteration"] and "heat" in header
    assert [r[0] for r in rows] == ["react", "jerp"]
    assert rows[1][header.index("expert top-1")] == "1.000"
    assert rows[0][header.index("put")] == "0.67"  # g0, g2 of g0, g2, g4
    # paired against the first row: games g4, g5 flip to won -> McNemar p = 0.5; state 3
    # becomes ranked 1st (3/4 -> 4/4)
    assert header[-3:] == ["success vs HEAD~1", "agreement vs HEAD~1", "top-1 vs HEAD~1"]
    assert rows[0][-3:] == ["(reference)"] * 3
    assert rows[1][-3] == "+0.333 (p = 0.5)"
    assert rows[1][-2] == "-"  # these games' steps carry no expert labels
    assert rows[1][-1].startswith("+0.250 (p ") and "*" not in rows[1][-1]


def test_table_two_pairs_only_runs_of_the_same_seed(repo):
    a, b = (experiments.load_rev(repo, r) for r in ("HEAD~1", "HEAD"))
    b.params = b.params | {"run": {"method": "jerp", "seed": 1}}  # other games and states
    header, rows = experiments.table2([a, b])
    assert [r[0] for r in rows] == ["react", "jerp"] and rows[1][-3:] == ["-"] * 3


def test_score_column_only_for_webshop_runs(repo):
    """An ALFWorld run beside a WebShop one has no score (not a 0.0): '-'."""
    a, b = (experiments.load_rev(repo, r) for r in ("HEAD~1", "HEAD"))
    b.params = b.params | {"env": {"name": "webshop"}}
    header, rows = experiments.table2([a, b])
    col = header.index("score")
    assert rows[0][col] == "-" and rows[1][col].startswith("66.7 (")  # reward 1 in 4 of 6
    # WebShop rows give score and success, no per-category columns (the paper's layout),
    # and expert agreement (its scripted shopper labels every state)
    header, _ = experiments.table2([b])
    assert header[4:8] == ["all (95% CI)", "expert agreement", "expert top-1", "score"]


def test_unknown_revision_is_a_clear_error(repo, capsys):
    with pytest.raises(SystemExit, match="no-such-rev: no metrics"):
        _compare(repo, capsys, "HEAD", "no-such-rev")


def test_no_experiments_in_a_plain_repo(repo):
    assert experiments.latest_experiments(repo) == []


def _exp(repo: Path, rev: str, name: str, results: str | None = None) -> str:
    """A DVC experiment ref named `name` run from commit `rev` (as `dvc exp run` leaves
    one), its results those of commit `results` (default: `rev`'s); returns the ref."""
    base, res = (subprocess.run(["git", "rev-parse", r], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
                 for r in (rev, results or rev))
    ref = f"refs/exps/{base[:2]}/{base[2:]}/{name}"
    sh(["git", "update-ref", ref, res], repo)
    return ref


def test_a_later_commit_keeps_the_latest_experiments(repo):
    """Experiments of HEAD~1 are still shown at HEAD, labelled with the commit they were
    run from, unless HEAD has a run of the same configuration (method, env, seed)."""
    base = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    refs = [_exp(repo, "HEAD~1", "jerp-old", "HEAD"), _exp(repo, "HEAD~1", "react-exp")]
    try:
        # refs of one commit sort by name (their commits' dates are equal here)
        [(at, exps)] = experiments.latest_experiments(repo)
        assert at == base and [name for name, _ in exps] == ["jerp-old", "react-exp"]
        runs, skipped = experiments.latest_runs(repo)
        assert [r.label for r in runs] == [f"jerp-old@{base[:7]}", f"react-exp@{base[:7]}"]
        assert [r.method for r in runs] == ["jerp", "react"] and not skipped
        # the workspace (HEAD: jerp, seed 0) supersedes the older jerp run
        here = experiments.load_rev(repo, experiments.WORKSPACE)
        runs, _ = experiments.latest_runs(repo, shown=(here,))
        assert [r.label for r in runs] == [f"react-exp@{base[:7]}"]
        # HEAD's own experiments are all kept (here a jerp run beside the workspace's), and
        # a name that repeats on HEAD~1 is read at each experiment's own commit
        refs.append(_exp(repo, "HEAD", "react-exp"))
        runs, _ = experiments.latest_runs(repo, shown=(here,))
        assert [(r.label, r.method) for r in runs] == [("react-exp", "jerp"),
                                                         (f"react-exp@{base[:7]}", "react")]
        assert experiments.load_rev(repo, "react-exp").method == "jerp"  # the nearest
        # an ablation of the workspace's method (another finetune.algorithm) hides nothing
        params = yaml.safe_load((repo / "params.yaml").read_text())
        params["finetune"] = {**params.get("finetune", {}), "algorithm": "rft"}
        refs.append(_exp(repo, "HEAD~1", "jerp-rft", _commit_with_params(repo, params)))
        runs, _ = experiments.latest_runs(repo, shown=(here,))
        assert f"jerp-rft@{base[:7]}" in [r.label for r in runs]
    finally:
        for ref in refs:
            sh(["git", "update-ref", "-d", ref], repo)


def _commit_with_params(repo: Path, params: dict) -> str:
    """A commit of HEAD's files with another params.yaml, HEAD left where it is."""
    def git(*args: str, env: dict | None = None, stdin: str | None = None) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              check=True, env=env, input=stdin).stdout.strip()

    import os

    env = os.environ | {"GIT_INDEX_FILE": str(repo / ".git" / "tmp-index")}
    blob = git("hash-object", "-w", "--stdin", stdin=yaml.safe_dump(params))
    git("read-tree", "HEAD", env=env)
    git("update-index", "--cacheinfo", f"100644,{blob},params.yaml", env=env)
    tree = git("write-tree", env=env)
    return git("commit-tree", tree, "-p", "HEAD", "-m", "other eval set")


def test_runs_on_other_states_get_their_own_table(repo, capsys):
    """An experiment that ranks more reference states (the standard preset) is another
    configuration, not comparable in one table with the workspace's: split_by_games puts
    it in a table of its own eval set, which `jerp compare --table` prints after."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    refs = []
    for name, method in (("react-standard", "react"), ("jerp-standard", "jerp")):
        more = params | {"run": {"method": method, "seed": 0},
                         "eval": {"state_games_per_type": 6}}
        refs.append(f"refs/exps/{head[:2]}/{head[2:]}/{name}")
        sh(["git", "update-ref", refs[-1], _commit_with_params(repo, more)], repo)
    try:
        here = experiments.load_rev(repo, experiments.WORKSPACE)
        runs, skipped = experiments.latest_runs(repo, shown=(here,))
        assert sorted(r.label for r in runs) == ["jerp-standard", "react-standard"]
        same, other = experiments.split_by_games(runs, here)
        assert same == [] and len(other) == 1
        games, group = other[0]
        assert [r.label for r in group] == ["jerp-standard", "react-standard"]  # here's first
        assert games == "alfworld None: None played games per task type + 6 whose reference " \
                        "states only are ranked"
        webshop = experiments.Run("w", params | {"env": {"name": "webshop"}}, [])
        assert experiments.split_by_games([webshop], here) == ([webshop], [])

        out = _compare(repo, capsys, table=True)
        assert "On other games or states" in out and "paired against jerp-standard" in out
    finally:
        for ref in refs:
            sh(["git", "update-ref", "-d", ref], repo)


def test_table_without_runs_is_the_workspace_and_this_commits_experiments(repo, capsys):
    out = _compare(repo, capsys, table=True)
    assert "workspace" in out and "jerp" in out and "seeds" in out


def test_a_bootstrap_p_of_zero_reads_as_below_its_resolution():
    """No resample of 2000 crossing zero bounds p below 2/2000, it does not make it 0."""
    from jerp.report.analysis import fmt_p

    assert fmt_p(0.0) == "p < 0.001" and fmt_p(0.26) == "p = 0.26" and fmt_p(0.001) == "p = 0.001"


# ---------------------------------------------------------------- ceiling row, agreement

CEILING = {"episodes": 6, "success": 0.8333, "success_ci": [0.4365, 0.9699],
           "success_by_type": {"pick_and_place_simple": 1.0,
                               "pick_heat_then_place_in_recep": 0.6667},
           "score": 83.33, "mean_steps": 9.0, "invalid_action_rate": 0.0}
DEMOS = {"asked": "walkthrough", "games": 3, "won": 3, "by": {"walkthrough": 3},
         "mean_steps": 8.0}


def _run(root: Path, method: str, seed: int = 0, *, ceiling: dict | None = None,
         agreement: float | None = None) -> experiments.Run:
    """The fixture's run at `root` (a workspace), with metrics/references.json when
    `ceiling` is given ({}: null, as without an expert) and expert agreement at its last
    iteration when `agreement` is."""
    root.mkdir()
    write_run(root)
    (root / "params.yaml").write_text(yaml.safe_dump(
        {"run": {"method": method, "seed": seed}, "env": {"name": "alfworld"},
         "eval_iterations": [0, 1]}))
    if ceiling is not None:
        (root / paths.references_stats_file()).write_text(
            json.dumps({"demos": DEMOS, "ceiling": ceiling or None}))
    if agreement is not None:
        m = json.loads((root / paths.metrics_file(1)).read_text())
        (root / paths.metrics_file(1)).write_text(json.dumps(m | {
            "expert_agreement": agreement, "expert_agreement_ci": [0.2938, 0.5577],
            "expert_labels": 50}))
    return experiments.load(workspace(root), root.name)


def test_ceiling_row_only_where_references_were_recorded(tmp_path):
    with_refs = _run(tmp_path / "a", "jerp", ceiling=CEILING)
    plain = _run(tmp_path / "b", "react")
    header, rows = experiments.table2([plain, with_refs])
    assert [r[0] for r in rows] == ["react", "jerp", "searching expert (ceiling)"]
    top = dict(zip(header, rows[-1], strict=True))
    assert top["run"] == "a" and top["all (95% CI)"] == "5/6 = 0.83 (0.44-0.97)"
    assert (top["put"], top["heat"]) == ("1.00", "0.67")  # per type: rates, no counts
    assert rows[-1][-3:] == ["-"] * 3 and top["expert top-1"] == "-"
    # the first row stays the one every run is paired against
    assert header[-3:] == ["success vs b", "agreement vs b", "top-1 vs b"]
    assert rows[0][-3:] == ["(reference)"] * 3
    _, rows = experiments.table2([plain])
    assert [r[0] for r in rows] == ["react"]
    # runs on the same games at the same step limit share one ceiling row
    twin = _run(tmp_path / "c", "react", ceiling=CEILING)
    _, rows = experiments.table2([with_refs, twin])
    assert [(r[0], r[1]) for r in rows if r[0].startswith("searching")] == [
        ("searching expert (ceiling)", "a, c")]
    # no expert, no ceiling: WebShop's references.json holds "ceiling": null
    null = _run(tmp_path / "d", "react", ceiling={})  # written as "ceiling": null
    assert null.refs is not None and null.refs.ceiling is None
    assert len(experiments.table2([null])[1]) == 1


def test_agreement_column_shows_the_value_with_its_interval(tmp_path):
    a = _run(tmp_path / "a", "jerp", agreement=0.42)
    b = _run(tmp_path / "b", "react")
    header, rows = experiments.table2([a, b])
    col = header.index("expert agreement")
    assert header[col - 1:col + 2] == ["all (95% CI)", "expert agreement", "expert top-1"]
    assert rows[0][col] == "21/50 = 0.420 (0.294-0.558)" and rows[1][col] == "-"
    # seeds of one configuration: the mean ± sd of their agreement
    s1 = _run(tmp_path / "s1", "jerp", seed=1, agreement=0.62)
    _, rows = experiments.table2([a, s1])
    assert rows[0][col] == "0.520 ± 0.141 (2 seeds)"


def test_compare_table_prints_the_ceiling_of_the_workspace(repo, capsys):
    """`jerp compare --table` reads metrics/references.json through dvc.api as the rest."""
    refs = repo / paths.references_stats_file()
    refs.write_text(json.dumps({"demos": None, "ceiling": CEILING}))
    try:
        out = _compare(repo, capsys, "HEAD~1", "workspace", table=True)
    finally:
        refs.unlink()
    assert "searching expert (ceiling)" in out and "5/6 = 0.83" in out
    assert "expert agreement" in out
    out = _compare(repo, capsys, "HEAD~1", "workspace", table=True)
    assert "searching expert" not in out


def test_table_compares_success_at_1_and_labels_reflexion_success_at_k(tmp_path):
    """A hand-made Reflexion run (eval.jsonl with every trial): games g0-g5 at iteration 1,
    g0 and g1 won at the first attempt, g2 and g3 at the second; success@1 is 2/6 by
    default, success@2 = 4/6 with at_k, so labelled; a run without retries is unchanged."""
    from report_fixtures import TYPES, eval_metrics, game

    from jerp.metrics_schema import write_record

    refl = _run(tmp_path / "r", "reflexion").label  # the fixture, then its iteration 1 redone
    root = tmp_path / "r"
    first = [game(f"g{j}", TYPES[j % 2], j < 2, 1) for j in range(6)]
    retry = [game(f"g{j}", TYPES[j % 2], j in (2, 3), 1).model_copy(update={"trial": 1})
             for j in range(2, 6)]
    (root / paths.eval_file(1)).write_text("".join(t.model_dump_json() + "\n"
                                                   for t in first + retry))
    write_record(root / paths.metrics_file(1), eval_metrics(
        episodes=6, success=0.3333, iteration=1, success_at={"1": 0.3333, "2": 0.6667},
        trial_episodes=10))
    runs = [experiments.load(workspace(root), refl),
            _run(tmp_path / "p", "policy_only")]
    header, rows = experiments.table2(runs)
    col = header.index("all (95% CI)")
    assert rows[0][col] == "2/6 = 0.33 (0.10-0.70)"
    # policy_only's fixture run wins g0-g3 at iteration 1: +2 games against Reflexion@1
    assert rows[1][col] == "4/6 = 0.67 (0.30-0.90)" and rows[1][-3].startswith("+0.333")
    header, rows = experiments.table2(runs, at_k=True)
    assert rows[0][col] == "4/6 = 0.67 (0.30-0.90) (success@2)"
    assert rows[1][col] == "4/6 = 0.67 (0.30-0.90)" and rows[1][-3].startswith("+0.000")


def _paired(p: float, diff: float = 0.1) -> analysis.PairedResult:
    return analysis.PairedResult("t", "games", 10, 0.5, 0.5 + diff, diff, p)


def test_table_two_marks_the_differences_that_survive_holm():
    # four tests in the table: p 0.01, 0.04 (row 1) and 0.012, 0.3 (row 2), agreement not
    # paired; Holm multiplies the sorted 0.01, 0.012, 0.04, 0.3 by 4, 3, 2, 1: 0.04, 0.036,
    # 0.08, 0.3 -> the first two survive, 0.04 is significant alone but not after the correction
    rows = experiments.paired_cells([None, [_paired(0.01), None, _paired(0.04)],
                                     [_paired(0.012, -0.2), None, _paired(0.3)], None],
                                    [True, False, False, False])
    h = analysis.HOLM
    assert rows == [["(reference)"] * 3,
                    [f"+0.100 (p = 0.01) * {h}", "-", "+0.100 (p = 0.04) *"],
                    [f"-0.200 (p = 0.012) * {h}", "-", "+0.100 (p = 0.3)"], ["-"] * 3]
    # a missing test is not counted: alone, 0.04 survives
    assert experiments.paired_cells([None, [None, None, _paired(0.04)]], [True, False])[1] == [
        "-", "-", f"+0.100 (p = 0.04) * {h}"]
    # the first run in a seed group: not paired, and not the reference row either
    assert experiments.paired_cells([None], [False]) == [["-"] * 3]
