"""Snapshot diffs, a rule's history, and the two renderers."""

from __future__ import annotations

import json

from jerp.memory.diff import (
    diff_json,
    diff_snapshots,
    diff_table,
    history_table,
    render_text,
    rule_history,
)
from jerp.records import Rule, RuleSnapshot


def rule(i: int, text: str, score: int) -> Rule:
    return Rule(id=f"R{i}", text=text, score=score, created=0, updated=0)


S0 = RuleSnapshot(iteration=0, capacity=5, rules=[rule(1, "a", 2), rule(2, "b", 2)], next_id=3)
S1 = RuleSnapshot(iteration=1, capacity=5, rules=[rule(1, "a2", 3), rule(3, "c", 2)], next_id=4)
S2 = RuleSnapshot(iteration=2, capacity=5, rules=[rule(1, "a2", 1), rule(3, "c", 2)], next_id=4)


def test_diff_added_removed_edited_scores() -> None:
    d = diff_snapshots(S0, S1)
    assert [r.id for r in d.added] == ["R3"] and [r.id for r in d.removed] == ["R2"]
    assert [(e.id, e.old_text, e.new_text) for e in d.edited] == [("R1", "a", "a2")]
    assert [(s.id, s.old, s.new, s.delta) for s in d.score_changes] == [("R1", 2, 3, 1)]
    assert d.score_changes[0].text  # a score-only row still names its rule
    assert diff_snapshots(S1, S1).empty


def test_rule_history() -> None:
    assert [(h.iteration, h.event, h.score) for h in rule_history([S2, S0, S1], "R1")] == [
        (0, "added", 2), (1, "edited", 3), (2, "rescored", 1)]
    assert [(h.iteration, h.event) for h in rule_history([S0, S1, S2], "R2")] == [
        (0, "added"), (1, "removed")]
    assert rule_history([S0], "R9") == []


def test_renderers() -> None:
    d = diff_snapshots(S0, S1)
    data = json.loads(json.dumps(diff_json(d)))
    assert data["score_changes"][0]["delta"] == 1 and data["added"][0]["id"] == "R3"
    text = render_text(diff_table(d))
    for word in ("added", "removed", "edited", "R3", "2 -> 3 (+1)"):
        assert word in text
    assert "rescored" in render_text(history_table("R1", rule_history([S0, S1, S2], "R1")))
