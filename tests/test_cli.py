"""The `jerp` CLI outside DVC: listing tasks and reading rule snapshots."""

import json

import pytest

from jerp import paths
from jerp.cli import main
from jerp.records import Rule, RuleSnapshot, write_snapshot


def test_tasks_lists_a_whole_split(capsys, monkeypatch, root):
    monkeypatch.chdir(root)
    main(["tasks", "--split", "eval_out", "--all"])
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 134 and "134 tasks" in out.err


def _rule(i, text, score):
    return Rule(id=f"R{i}", text=text, score=score, scope="pick_heat_then_place_in_recep",
                created=1, updated=1)


@pytest.fixture
def workspace(tmp_path, monkeypatch, root):
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_snapshot(tmp_path / paths.rules_file(1),
                   RuleSnapshot(iteration=1, capacity=5, rules=[_rule(1, "heat it", 2),
                                                                _rule(2, "look", 2)]))
    write_snapshot(tmp_path / paths.rules_file(2),
                   RuleSnapshot(iteration=2, capacity=5, rules=[_rule(1, "heat it first", 3),
                                                                _rule(3, "use the fridge", 2)]))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_rules_diff_json(workspace, capsys):
    main(["rules", "diff", "1", "2", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in d["added"]] == ["R3"]
    assert [r["id"] for r in d["removed"]] == ["R2"]
    assert d["edited"][0]["new_text"] == "heat it first"


def test_rules_show_and_history(workspace, capsys):
    main(["rules", "show"])  # latest iteration by default
    out = capsys.readouterr().out
    assert "use the fridge" in out and "look" not in out
    main(["rules", "history", "R2", "--json"])
    events = [h["event"] for h in json.loads(capsys.readouterr().out)]
    assert events == ["added", "removed"]


def test_rules_missing_iteration_is_a_clear_error(workspace):
    with pytest.raises(SystemExit, match="no snapshot for iteration 7"):
        main(["rules", "show", "--iteration", "7"])


@pytest.fixture
def h2r_workspace(workspace):
    """Iteration 3: the flat rules of iteration 2 plus H2R's two levels."""
    plan = Rule(id="R4", text="Plan for heat some egg: 1. find and take the egg", score=2,
                scope="pick_heat_then_place_in_recep", level="planning", created=3, updated=3)
    step = Rule(id="R5", text="To find and take the egg: go to a countertop.", score=2,
                scope="find and take the egg", level="execution", created=3, updated=3)
    write_snapshot(workspace / paths.rules_file(3), RuleSnapshot(
        iteration=3, capacity=5, rules=[_rule(1, "heat it first", 4), _rule(3, "use the fridge", 2),
                                        plan, step]))
    return workspace


def test_rules_per_level(h2r_workspace, capsys):
    main(["rules", "show"])
    out = capsys.readouterr().out
    # one table per level, planning first, then execution, then the flat rules
    assert out.index("planning memories") < out.index("execution memories") < out.index(
        "rule pool")
    main(["rules", "show", "--level", "execution", "--json"])
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["rules"]] == ["R5"]
    main(["rules", "diff", "2", "3", "--level", "planning", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in d["added"]] == ["R4"] and d["score_changes"] == []
    main(["rules", "diff", "2", "3"])
    out = capsys.readouterr().out
    assert "planning memories: iteration 2 -> 3" in out and "rule pool: iteration 2 -> 3" in out
    main(["rules", "diff", "2", "3", "--level", "rule"])
    assert "R4" not in capsys.readouterr().out
    main(["rules", "history", "R5", "--level", "planning", "--json"])
    assert json.loads(capsys.readouterr().out) == []
    with pytest.raises(SystemExit):
        main(["rules", "show", "--level", "plans"])


def test_tune_with_a_missing_adapter_is_a_clear_error(workspace):
    with pytest.raises(SystemExit, match="jerp tune: no adapter folder at .*nowhere"):
        main(["tune", "--episodes", "--adapter", "nowhere", "--history", "1", "3"])


def test_tune_avoid_repeats_needs_episodes(workspace):
    """policy.avoid_repeats is a rule for episodes: reference-state ranking cannot see it."""
    with pytest.raises(SystemExit, match="--avoid-repeats needs --episodes"):
        main(["tune", "--avoid-repeats"])
    with pytest.raises(SystemExit, match="--temperatures needs --episodes"):
        main(["tune", "--temperatures", "1"])


@pytest.mark.slow
def test_evaluate_draws_games_per_type_and_pairs_against_an_earlier_evaluation(
        workspace, alf_root, model_cache, capsys):
    """On the real engine and model: --games-per-type draws as prepare draws (by run.seed),
    --out keeps the episodes, and --against pairs a second evaluation of the same games
    with the first (the same greedy policy: no game changes side)."""
    import yaml

    from jerp.config import load_params
    from jerp.envs.registry import sample_split
    from jerp.records import read_trajectories

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["env"] |= {"data_dir": str(alf_root), "max_steps": 1,
                      "task_types": ["pick_and_place_simple"]}
    params["policy"] |= {"cache_dir": str(model_cache)}
    params["runner"] = {"kind": "local"}
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    p = load_params(workspace / "params.yaml")
    drawn = [t.task_id for t in sample_split(p.env, alf_root, "eval_out", p.run.seed, per_type=2)]

    main(["evaluate", "--games-per-type", "2", "--out", "a.jsonl"])
    first = read_trajectories(workspace / "a.jsonl")
    assert [t.task_id for t in first] == drawn and all(t.n_steps == 1 for t in first)
    capsys.readouterr()
    main(["evaluate", "--games-per-type", "2", "--against", "a.jsonl"])
    out = capsys.readouterr().out
    assert "eval success (exact McNemar): a.jsonl" in out and "+0.000" in out
    assert "expert agreement per game (paired bootstrap): a.jsonl" in out
    with pytest.raises(SystemExit, match="a.jsonl holds other games than this evaluation's 1"):
        main(["evaluate", "--games-per-type", "1", "--against", "a.jsonl"])
    with pytest.raises(SystemExit, match="give --all or --games-per-type, not both"):
        main(["evaluate", "--all", "--games-per-type", "1"])


def test_paired_compares_two_evaluations_on_the_games_both_played(tmp_path, capsys):
    """jerp paired: first attempts only (a Reflexion retry is not success@1), the games in
    both files (a subset of a larger evaluation works), per type and paired tests; two
    files with no game in common are refused by name."""
    from report_fixtures import game

    from jerp.records import write_trajectories

    heat = "pick_heat_then_place_in_recep"
    before = [game("g1", heat, False, 0), game("g2", heat, False, 0), game("g3", heat, True, 0),
              game("g4", heat, True, 0)]  # g4: not in the after file
    retry = game("g1", heat, True, 0).model_copy(update={"trial": 1})
    after = [game("g1", heat, False, 0), retry, game("g2", heat, True, 0),
             game("g3", heat, True, 0)]
    write_trajectories(tmp_path / "a.jsonl", before)
    write_trajectories(tmp_path / "b.jsonl", after)
    main(["paired", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])
    out = capsys.readouterr().out
    assert out.startswith(f"3 games in both ({tmp_path / 'a.jsonl'} holds 4, ")
    all_row = next(line for line in out.splitlines() if "all" in line)
    assert [c.strip() for c in all_row.strip("│ ").split("│")] == ["all", "3", "1", "2", "0", "1"]
    assert ("eval success (exact McNemar): a.jsonl 0.333 vs b.jsonl 0.667 on the same 3 games"
            in out)
    write_trajectories(tmp_path / "c.jsonl", [game("g9", heat, True, 0)])
    with pytest.raises(SystemExit, match=r"c.jsonl \(1\) share no game"):
        main(["paired", str(tmp_path / "a.jsonl"), str(tmp_path / "c.jsonl")])
    with pytest.raises(SystemExit, match="jerp paired: .*missing.jsonl"):
        main(["paired", str(tmp_path / "missing.jsonl"), str(tmp_path / "a.jsonl")])
