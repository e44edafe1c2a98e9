"""The flat pool behind the Memory interface: same revisions, retrieval and snapshots."""

from __future__ import annotations

from jerp.memory.base import Query
from jerp.memory.flat import FlatPool
from jerp.memory.pool import revise
from jerp.records import Evidence, Proposal, Rule, RuleShown, RuleSnapshot

HEAT = "pick_heat_then_place_in_recep"


def rule(i: int, score: int, scope: str = "general") -> Rule:
    return Rule(id=f"R{i}", text=f"rule {i}", score=score, scope=scope, created=0, updated=0)


POOL = RuleSnapshot(iteration=0, capacity=10, next_id=5, rules=[
    rule(1, 2), rule(2, 5, HEAT), rule(3, 4, "pick_two_obj_and_place"), rule(4, 3, HEAT)])
PROPS = [Proposal(op="ADD", text="Heat it first.", scope=HEAT, evidence=Evidence(failed="f")),
         Proposal(op="DOWNVOTE", rule_ids=["R1"], scope="general",
                  evidence=Evidence(failed="f"))]


def test_revise_matches_the_pool_function_and_keeps_the_old_memory() -> None:
    before = FlatPool(POOL, "score")
    after, applied = before.revise(PROPS, iteration=1, capacity=10)
    want, want_applied = revise(POOL, PROPS, 1, 10)
    assert after.snapshot() == want and applied == want_applied
    assert after.retrieval == "score" and before.snapshot() is POOL
    assert [(r.id, r.score) for r in after.snapshot().rules] == [
        ("R1", 1), ("R2", 5), ("R3", 4), ("R4", 3), ("R5", 2)]


def test_retrieve_by_score_in_scope() -> None:
    shown = FlatPool(POOL).retrieve(Query(HEAT, "heat some egg and put it in countertop."), 2)
    assert shown == [RuleShown(id="R2", text="rule 2"), RuleShown(id="R4", text="rule 4")]
    assert [r.id for r in FlatPool(POOL).retrieve(Query(HEAT, "g"), 5)] == ["R2", "R4", "R1"]


def test_diff_against_the_previous_memory() -> None:
    before = FlatPool(POOL)
    after, _ = before.revise(PROPS, iteration=1, capacity=10)
    d = after.diff(before)
    assert [r.id for r in d.added] == ["R5"] and d.removed == [] and d.edited == []
    assert [(c.id, c.old, c.new) for c in d.score_changes] == [("R1", 2, 1)]
    assert (d.from_iteration, d.to_iteration) == (0, 1)
