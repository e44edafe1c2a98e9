"""The contrastive reflector on hand-made pairs and on a real ALFWorld walkthrough."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jerp.memory.pool import revise
from jerp.memory.reflect.contrastive import find_divergence, reflect_contrastive
from jerp.records import Rule, RuleShown, RuleSnapshot, StepRecord, Trajectory

HEAT = "pick_heat_then_place_in_recep"
GAMES = Path("/work/shared/alfworld/json_2.1.1/train")


def traj(tid: str, actions: list[str], won: bool, goal: str = "heat some egg and put it in "
         "countertop.", task_id: str = "g1", task_type: str = HEAT,
         shown: list[Rule] = ()) -> Trajectory:
    return Trajectory(
        traj_id=tid, task_id=task_id, env="alfworld", split="train", task_type=task_type,
        goal=goal, steps=[StepRecord(observation="", admissible_count=0, action=a)
                          for a in actions],
        reward=float(won), won=won, n_steps=len(actions),
        rules_shown=[RuleShown(id=r.id, text=r.text) for r in shown],
        source="rollout")


REF = ["go to countertop 1", "take egg 1 from countertop 1", "go to microwave 1",
       "heat egg 1 with microwave 1", "go to countertop 2", "move egg 1 to countertop 2"]
FAIL = ["go to countertop 1", "take egg 1 from countertop 1", "go to countertop 2",
        "move egg 1 to countertop 2", "look"]


def pool(*rules: Rule) -> RuleSnapshot:
    return RuleSnapshot(iteration=1, capacity=10, rules=list(rules), next_id=len(rules) + 1)


def test_rule_about_the_missed_milestone_at_the_divergence() -> None:
    (p,) = reflect_contrastive([traj("fail", FAIL, False)], [traj("ref", REF, True)],
                               pool(), max_ops=3)
    assert p.op == "ADD" and p.scope == HEAT
    assert p.evidence.failed == "fail" and p.evidence.reference == "ref"
    assert p.evidence.diverge_step == 2  # the failure went to the countertop, not the microwave
    assert "heat" in p.text and "microwave" in p.text and "egg" not in p.text
    assert not re.search(r"\d", p.text)
    assert p.text.index("take") < p.text.index("heat") < p.text.index("put")


def test_wrong_order_is_found_when_nothing_is_missing() -> None:
    swapped = REF[:2] + REF[4:] + REF[2:4]
    d = find_divergence(traj("f", swapped, False), traj("r", REF, True))
    assert d is not None and d.kind == "order"
    assert "before you put it in the target receptacle" in d.text


def test_same_task_reference_preferred_and_existing_rule_upvoted() -> None:
    other = traj("other", ["go to microwave 1", "take mug 1 from countertop 1"], True,
                 goal="heat some mug and put it in cabinet.", task_id="g2")
    first = reflect_contrastive([traj("f1", FAIL, False)], [other, traj("ref", REF, True)],
                                pool(), 3)[0]
    existing = Rule(id="R1", text=first.text, score=2, scope=HEAT, created=0, updated=0)
    again = reflect_contrastive([traj("f2", FAIL, False)], [traj("ref", REF, True)],
                                pool(existing), 3)
    assert first.evidence.reference == "ref"
    assert [(p.op, p.rule_ids) for p in again] == [("UPVOTE", ["R1"])]


def test_votes_on_rules_shown() -> None:
    heat_rule = Rule(id="R1", text="Heat the target object with a microwave before placing it.",
                     score=2, scope=HEAT, created=0, updated=0)
    put_rule = Rule(id="R2", text="Put the target object in the target receptacle.", score=2,
                    scope=HEAT, created=0, updated=0)
    rollouts = [traj("win", REF, True, shown=[heat_rule, put_rule]),
                traj("fail", FAIL, False, shown=[heat_rule, put_rule]),
                traj("fail2", FAIL, False, task_id="g1", shown=[put_rule])]
    props = reflect_contrastive(rollouts, [], pool(heat_rule, put_rule), max_ops=5)
    votes = {(p.op, p.rule_ids[0]) for p in props if p.op != "ADD"}
    assert ("UPVOTE", "R1") in votes  # the win heated; the failures did not
    assert ("DOWNVOTE", "R2") in votes  # followed by one win and two failures
    assert len(props) <= 5


def test_downvote_kept_when_findings_exceed_max_ops() -> None:
    put_rule = Rule(id="R1", text="Put the target object in the target receptacle.", score=2,
                    scope=HEAT, created=0, updated=0)
    rollouts = [traj("f1", FAIL, False, shown=[put_rule]),  # followed it and failed
                traj("f2", ["go to countertop 1", "look"], False),  # never took the egg
                traj("f3", REF[:4] + ["look"], False)]  # never put it down
    everything = reflect_contrastive(rollouts, [traj("ref", REF, True)], pool(put_rule), 10)
    assert sum(p.op == "ADD" for p in everything) > 2
    props = reflect_contrastive(rollouts, [traj("ref", REF, True)], pool(put_rule), 2)
    assert [(p.op, p.rule_ids) for p in props][0] == ("DOWNVOTE", ["R1"])
    assert len(props) == 2 and props[1].op == "ADD"


def test_max_ops_and_pool_application() -> None:
    props = reflect_contrastive([traj("f", FAIL, False)], [traj("r", REF, True)], pool(), 0)
    assert props == []
    props = reflect_contrastive([traj("f", FAIL, False)], [traj("r", REF, True)], pool(), 2)
    new, applied = revise(pool(), props, 2, 10)
    assert applied[0].accepted and new.rules[0].provenance == ["f", "r"]


def _game(task_prefix: str) -> tuple[list[str], str]:
    path = sorted(GAMES.glob(f"{task_prefix}*/*/game.tw-pddl"))[0]
    game = json.loads(path.read_text())
    goal = re.search(r"Your task is to: ([^\"\\]*)", game["grammar"]).group(1)
    return game["walkthrough"], goal


@pytest.mark.skipif(not GAMES.exists(), reason="ALFWorld game files not present")
def test_real_walkthrough_without_heat_step() -> None:
    walkthrough, goal = _game(HEAT)
    failed = [a for a in walkthrough if not a.startswith("heat ")]
    assert len(failed) == len(walkthrough) - 1
    ref = traj("walkthrough", walkthrough, True, goal=goal)
    (p,) = reflect_contrastive([traj("f", failed, False, goal=goal)], [ref], pool(), 3)
    heat_at = next(i for i, a in enumerate(walkthrough) if a.startswith("heat "))
    assert p.op == "ADD" and p.evidence.diverge_step == heat_at
    assert p.text == ("After you take the target object, go to a microwave and heat it with the "
                      "microwave before you put it in the target receptacle.")
