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
