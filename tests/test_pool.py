"""The pool's operations and score rule, on hand-made snapshots."""

from __future__ import annotations

from jerp.memory.pool import MERGE_SCORE_CAP, PRUNED, empty_pool, revise
from jerp.records import Evidence, Proposal, Rule, RuleSnapshot


def rule(i: int, score: int, text: str | None = None, scope: str = "general") -> Rule:
    return Rule(id=f"R{i}", text=text or f"rule {i}", score=score, scope=scope, created=0,
                updated=0, provenance=[f"t{i}"])


def snap(*rules: Rule, capacity: int = 10) -> RuleSnapshot:
    return RuleSnapshot(iteration=0, capacity=capacity, rules=list(rules),
                        next_id=max([int(r.id[1:]) for r in rules], default=0) + 1)


def ev(failed: str = "f1", reference: str = "ref1") -> Evidence:
    return Evidence(failed=failed, reference=reference, diverge_step=3)


def by_id(s: RuleSnapshot) -> dict[str, Rule]:
    return {r.id: r for r in s.rules}


def test_empty_pool() -> None:
    p = empty_pool(5)
    assert p.capacity == 5 and p.rules == [] and p.next_id == 1


def test_add_starts_at_two_with_new_id_and_provenance() -> None:
    new, props = revise(empty_pool(5), [Proposal(op="ADD", text="Heat it.", scope="heat",
                                                 evidence=ev())], iteration=1, capacity=5)
    (r,) = new.rules
    assert (r.id, r.score, r.scope, r.created, r.updated) == ("R1", 2, "heat", 1, 1)
    assert r.provenance == ["f1", "ref1"] and new.next_id == 2 and new.iteration == 1
    assert props[0].accepted and props[0].reject_reason is None


def test_upvote_edit_downvote_counts() -> None:
    prev = snap(rule(1, 2), rule(2, 2), rule(3, 2))
    new, props = revise(prev, [Proposal(op="UPVOTE", rule_ids=["R1"], evidence=ev("f9")),
                               Proposal(op="EDIT", rule_ids=["R2"], text="better"),
                               Proposal(op="DOWNVOTE", rule_ids=["R3"])], 2, 10)
    rules = by_id(new)
    assert rules["R1"].score == 3 and rules["R1"].provenance == ["t1", "f9", "ref1"]
    assert rules["R2"].score == 3 and rules["R2"].text == "better" and rules["R2"].updated == 2
    assert rules["R3"].score == 1
    assert all(p.accepted for p in props)


def test_downvote_to_zero_removes_and_later_ops_on_it_are_rejected() -> None:
    new, props = revise(snap(rule(1, 1)), [Proposal(op="DOWNVOTE", rule_ids=["R1"]),
                                           Proposal(op="UPVOTE", rule_ids=["R1"])], 1, 10)
    assert new.rules == []
    assert props[0].accepted and not props[1].accepted
    assert "unknown rule id" in props[1].reject_reason


def test_downvote_costs_two_when_over_capacity() -> None:
    prev = snap(rule(1, 9), rule(2, 5), capacity=2)
    props = [Proposal(op="ADD", text="new one"), Proposal(op="DOWNVOTE", rule_ids=["R1"])]
    new, _ = revise(prev, props, 1, capacity=2)
    assert by_id(new)["R1"].score == 7  # 3 rules > capacity 2 after the batch


def test_downvote_surcharge_does_not_depend_on_order() -> None:
    """Votes before the batch's ADD pay the over-capacity surcharge too."""
    prev = snap(rule(1, 9), rule(2, 5), capacity=2)
    new, out = revise(prev, [Proposal(op="DOWNVOTE", rule_ids=["R1"]),
                             Proposal(op="ADD", text="new one")], 1, capacity=2)
    assert by_id(new)["R1"].score == 7  # 9 - 1 - 1: 3 rules > capacity 2 after the batch
    assert set(by_id(new)) == {"R1", "R3"} and all(p.accepted for p in out)


def test_downvote_costs_one_when_pool_only_full() -> None:
    new, _ = revise(snap(rule(1, 5), rule(2, 5), capacity=2),
                    [Proposal(op="DOWNVOTE", rule_ids=["R1"])], 1, capacity=2)
    assert by_id(new)["R1"].score == 4


def test_downvote_surcharge_can_remove_and_free_the_slot() -> None:
    prev = snap(rule(1, 2), rule(2, 5), capacity=2)
    new, out = revise(prev, [Proposal(op="DOWNVOTE", rule_ids=["R1"]),
                             Proposal(op="ADD", text="new one")], 1, capacity=2)
    assert set(by_id(new)) == {"R2", "R3"} and all(p.accepted for p in out)


def _agrees(new: RuleSnapshot, out: list[Proposal]) -> bool:
    """Every accepted ADD's rule is in the pool, and the pool is within capacity."""
    texts = {r.text for r in new.rules}
    adds = [p for p in out if p.op == "ADD"]
    return (len(new.rules) <= new.capacity
            and all((p.text in texts) == p.accepted for p in adds))


def test_add_to_full_pool_replaces_weakest_old_rule() -> None:
    prev = snap(rule(1, 2), rule(2, 3), rule(3, 4), capacity=3)
    new, out = revise(prev, [Proposal(op="ADD", text="new one")], 1, capacity=3)
    assert out[0].accepted and [r.id for r in new.rules] == ["R2", "R3", "R4"]
    assert _agrees(new, out)


def test_full_pool_ties_drop_least_recently_updated_old_rule() -> None:
    prev = snap(rule(1, 2), rule(2, 2).model_copy(update={"updated": 5}), capacity=2)
    new, out = revise(prev, [Proposal(op="ADD", text="new one")], 6, capacity=2)
    assert [r.id for r in new.rules] == ["R2", "R3"] and _agrees(new, out)


def test_adds_beyond_capacity_reported_pruned() -> None:
    props = [Proposal(op="ADD", text=f"new {i}") for i in range(3)]
    new, out = revise(empty_pool(2), props, 1, capacity=2)
    assert [r.text for r in new.rules] == ["new 0", "new 1"]
    assert [p.accepted for p in out] == [True, True, False]
    assert out[2].reject_reason == PRUNED and _agrees(new, out)


def test_merge_sums_scores_capped_and_unions_provenance() -> None:
    prev = snap(rule(1, 3, scope="heat"), rule(2, 4, scope="heat"), rule(3, 9, scope="heat"))
    new, props = revise(prev, [Proposal(op="MERGE", rule_ids=["R1", "R2"], text="merged",
                                        evidence=ev())], 1, 10)
    merged = by_id(new)["R4"]
    assert merged.score == 7 and merged.scope == "heat"
    assert merged.provenance == ["t1", "t2", "f1", "ref1"]
    assert set(by_id(new)) == {"R3", "R4"}
    new2, _ = revise(new, [Proposal(op="MERGE", rule_ids=["R3", "R4"], text="all")], 2, 10)
    assert by_id(new2)["R5"].score == MERGE_SCORE_CAP


def test_prune_to_capacity_by_score_ties_keep_older() -> None:
    prev = snap(rule(1, 2), rule(2, 5), rule(3, 2), rule(4, 2), capacity=2)
    new, _ = revise(prev, [], 1, capacity=2)
    assert [r.id for r in new.rules] == ["R1", "R2"]


def test_invalid_proposals_rejected_not_applied() -> None:
    prev = snap(rule(1, 2))
    props = [Proposal(op="ADD", text="   "), Proposal(op="EDIT", rule_ids=["R7"], text="x"),
             Proposal(op="MERGE", rule_ids=["R1"], text="x"),
             Proposal(op="UPVOTE", rule_ids=["R1"], accepted=False, reject_reason="parser")]
    new, out = revise(prev, props, 1, 10)
    assert [p.accepted for p in out] == [False] * 4
    assert out[3].reject_reason == "parser"
    assert by_id(new)["R1"].score == 2 and new.next_id == prev.next_id


def test_duplicate_add_counts_as_upvote() -> None:
    prev = snap(rule(1, 2, text="Heat the egg first.", scope="heat"))
    new, out = revise(prev, [Proposal(op="ADD", text="heat the egg first", scope="heat")], 1, 10)
    assert len(new.rules) == 1 and new.rules[0].score == 3 and out[0].accepted


def test_previous_snapshot_never_mutated() -> None:
    prev = snap(rule(1, 1), rule(2, 2), rule(3, 3), capacity=2)
    before = prev.model_dump()
    revise(prev, [Proposal(op="DOWNVOTE", rule_ids=["R1"]),
                  Proposal(op="EDIT", rule_ids=["R2"], text="new", evidence=ev()),
                  Proposal(op="MERGE", rule_ids=["R2", "R3"], text="m"),
                  Proposal(op="ADD", text="a")], 1, capacity=2)
    assert prev.model_dump() == before
