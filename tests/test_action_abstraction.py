"""Each environment's action abstraction, and the contrastive reflector on a real WebShop
goal: buying the wrong option (or product) with the right sequence of actions."""

from __future__ import annotations

import pytest

from jerp.envs.actions import Act, followed, milestones, subgoal_boundaries
from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS, TARGET_OBJECT, TARGET_RECEP
from jerp.envs.webshop import WebShopEnv, list_tasks
from jerp.envs.webshop.actions import OTHER_OPTION, WEBSHOP_ACTIONS, goal_options
from jerp.envs.webshop.env import _goals
from jerp.envs.webshop.reward import option_matches
from jerp.memory.reflect.contrastive import find_divergence, reflect_contrastive
from jerp.policy.experience import milestone_progress
from jerp.records import RuleSnapshot, Trajectory
from jerp.replay import replay_reference

HEAT_GOAL = "heat some egg and put it in countertop."
HEAT_REF = ["go to countertop 1", "take egg 1 from countertop 1", "go to microwave 1",
            "heat egg 1 with microwave 1", "go to countertop 2", "move egg 1 to countertop 2"]


def test_alfworld_roles_milestones_and_subgoals() -> None:
    acts = ALFWORLD_ACTIONS.abstract(HEAT_REF, HEAT_GOAL)
    assert acts[1] == Act("take", (TARGET_OBJECT, TARGET_RECEP), HEAT_REF[1], True)
    assert acts[2] == Act("go to", ("a microwave",), HEAT_REF[2], False)
    assert [a.key for a in milestones(acts)] == [
        "take the target object", "heat the target object a microwave",
        "move the target object the target receptacle"]
    assert subgoal_boundaries(acts) == [2, 4, 6]
    assert subgoal_boundaries(acts + ALFWORLD_ACTIONS.abstract(["look"], HEAT_GOAL)) == [
        2, 4, 6, 7]
    assert ALFWORLD_ACTIONS.phrase(acts[3]) == "heat the target object with a microwave"
    assert followed("Heat it before you put it away.", acts, ALFWORLD_ACTIONS) is True
    assert followed("Never heat it.", acts, ALFWORLD_ACTIONS) is None


def test_goal_options_parse_every_real_goal() -> None:
    goals, _ = _goals(WebShopEnv().data_dir, 0)
    norm = {g.index: {k: " ".join(v.split()) for k, v in g.goal_options.items()} for g in goals}
    assert all(goal_options(g.instruction_text) == norm[g.index] for g in goals)  # 6,910 goals
    assert goal_options("Find me pillows with printing technology with size: 28\" x 28\", "
                        "and price lower than 30.00 dollars") == {"size": '28" x 28"'}
    assert goal_options("i need a lamp, and price lower than 20.00 dollars") == {}


def test_webshop_acts_name_the_product_and_the_options() -> None:
    goal = "Find me a tee with color: black, and size: x-large, and price lower than 40.00 dollars"
    acts = WEBSHOP_ACTIONS.abstract(
        ["search[tee]", "click[b094q7b3ss]", "click[black]", "click[small]",
         "click[description]", "click[buy now]"], goal)
    assert [(a.verb, a.args, a.ident, a.is_milestone) for a in acts] == [
        ("search", (), "", True),
        ("click product", (), "b094q7b3ss", True),
        ("select option", ("the color the goal asks for",), "", True),
        ("select option", (OTHER_OPTION,), "", True),
        ("read details", (), "", False),
        ("buy", (), "", True)]
    assert WEBSHOP_ACTIONS.phrase(acts[2]) == "select the color the goal asks for"
    assert acts[1].generic().key == "click product"


@pytest.fixture(scope="module")
def web_case():
    """The first train goal (seed 0) with an option whose product offers a value the goal
    does not ask for: its reference purchase, and the same purchase with that value."""
    env = WebShopEnv()
    for task in list_tasks(None, "train", 0):
        g = env.goal(task)
        product = env.catalogue.by_asin[g.asin]
        for name, want in g.goal_options.items():
            other = [v for v in product.options[name] if not option_matches([v], {name: want})]
            ref = replay_reference(env, task)
            if other and ref.won:
                bad = [f"click[{other[0]}]" if a == f"click[{want}]" else a for a in ref.actions]
                return env, task, ref, name, bad
    raise AssertionError("no WebShop goal with a wrong option value")


def _failed(env: WebShopEnv, task, actions: list[str]) -> Trajectory:
    t = replay_reference(env, task, actions)
    return t.model_copy(update={"traj_id": "rollout:fail", "source": "rollout"})


def test_wrong_option_on_a_real_goal_yields_a_rule(web_case) -> None:
    env, task, ref, name, bad = web_case
    failed = _failed(env, task, bad)
    assert ref.won and not failed.won and 0 < failed.reward < 1
    # the right sequence of actions: verbs alone cannot tell the two apart
    verbs = [[a.verb for a in WEBSHOP_ACTIONS.abstract(t.actions, t.goal)] for t in (ref, failed)]
    assert verbs[0] == verbs[1]
    d = find_divergence(failed, ref)
    assert d is not None and d.kind == "missing"
    assert ref.actions[d.ref_step] != failed.actions[d.failed_step]
    assert f"select the {name} the goal asks for" in d.text
    (p,) = reflect_contrastive([failed], [ref], RuleSnapshot.empty(5), 3)
    assert p.op == "ADD" and p.scope == task.task_type and p.text == d.text
    assert milestone_progress(failed.actions, ref.actions, ref.goal, "webshop") == pytest.approx(
        1 - 1 / len(milestones(WEBSHOP_ACTIONS.abstract(ref.actions, ref.goal))))


def test_wrong_product_on_a_real_goal_yields_a_rule(web_case) -> None:
    env, task, ref, _name, _bad = web_case
    asin = next(a for a in ref.actions if WEBSHOP_ACTIONS.abstract([a], "")[0].ident)
    hits = env.search(ref.actions[0][len("search["):-1])
    other = next(h for h in hits[:10] if h.lower() != asin[len("click["):-1])
    # the search, another product on the same results page, bought as it comes
    actions = [*ref.actions[: ref.actions.index(asin)], f"click[{other.lower()}]",
               "click[buy now]"]
    failed = _failed(env, task, actions)
    assert not failed.won
    d = find_divergence(failed, ref)
    assert d is not None and d.ref_step == ref.actions.index(asin)
    assert "open the product the goal describes" in d.text
    # across goals the product's identity means nothing: no product rule from another goal
    other_goal = ref.model_copy(update={"task_id": "webshop-s0-9999"})
    d2 = find_divergence(failed, other_goal)
    assert d2 is None or d2.ref_step != d.ref_step
