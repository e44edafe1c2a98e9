"""Working-set retrieval: by score within scope, and by embedding (real MiniLM + LanceDB)."""

from __future__ import annotations

import pytest

from jerp.memory import retrieve
from jerp.records import Rule, RuleSnapshot

HEAT, LOOK = "pick_heat_then_place_in_recep", "look_at_obj_in_light"


def rule(i: int, text: str, score: int, scope: str, level: str = "rule") -> Rule:
    return Rule(id=f"R{i}", text=text, score=score, scope=scope, level=level, created=0,
                updated=0)


POOL = RuleSnapshot(iteration=1, capacity=10, next_id=7, rules=[
    rule(1, "Turn on the desklamp while holding the object you must examine.", 5, LOOK),
    rule(2, "Check every drawer and cabinet before giving up on a search.", 2, "general"),
    rule(3, "Heat the egg in the microwave before you put it in the fridge.", 2, HEAT),
    rule(4, "Search the website with the brand and size named in the instruction.", 4, HEAT),
    rule(5, "Always close what you open.", 2, HEAT),
    rule(6, "Planning note.", 9, HEAT, level="planning"),
])


def test_score_method_takes_scope_and_general_ties_by_id() -> None:
    got = retrieve.working_set(POOL, HEAT, "heat some egg and put it in fridge.", 3, "score")
    assert [r.id for r in got] == ["R4", "R2", "R3"]
    assert all(r.scope in (HEAT, "general") for r in got)
    look = retrieve.working_set(POOL, LOOK, "examine the book with the desklamp.", 5)
    assert [r.id for r in look] == ["R1", "R2"]


def test_unknown_method_and_missing_index_dir() -> None:
    with pytest.raises(ValueError):
        retrieve.working_set(POOL, HEAT, "x", 3, "bm25")
    with pytest.raises(ValueError):
        retrieve.working_set(POOL, HEAT, "x", 3, "embedding")


def test_embedding_ranks_relevant_rule_first_and_caches(tmp_path) -> None:
    goal = "heat some egg and put it in fridge."
    got = retrieve.working_set(POOL, HEAT, goal, 2, "embedding", index_dir=tmp_path)
    assert got[0].id == "R3" and len(got) == 2
    before = retrieve.embedded_count()
    again = retrieve.working_set(POOL, HEAT, goal, 2, "embedding", index_dir=tmp_path)
    assert [r.id for r in again] == [r.id for r in got]
    assert retrieve.embedded_count() == before  # unchanged rules and goal: nothing re-embedded
    edited = POOL.model_copy(update={"rules": [*POOL.rules[:4],
                                               rule(5, "Always close the fridge.", 2, HEAT)]})
    retrieve.working_set(edited, HEAT, goal, 2, "embedding", index_dir=tmp_path)
    assert retrieve.embedded_count() == before + 1  # only the changed text
