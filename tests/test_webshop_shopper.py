"""The scripted WebShop shopper (envs/webshop/shopper.py), WebShop's searching expert, on
the real 1,000-product data: it wins from the instruction alone, never reads the goal's
product, and labels whatever state a trajectory reached (DAgger).

Measured (bench/webshop_shopper.py, 200 evenly spaced seed-0 train goals): reward 1.0 on
167 (83.5%; the oracle walkthrough 184), mean reward 0.949, 8.1 steps on average.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from jerp.config import parse_params
from jerp.envs.registry import env_spec
from jerp.envs.webshop import WebShopEnv, list_tasks, resolve_data_dir
from jerp.envs.webshop.goals import Goal
from jerp.envs.webshop.instruction import Wanted
from jerp.envs.webshop.shopper import BACK, NEXT, Listing, View, next_action
from jerp.replay import EXPERT_LIMIT

# eval_in goals 0-2 (canonical indices): 0 needs a rejection (the first result opened
# lacks the size asked for), 1 and 2 go straight to the goal's product.
WON = (0, 1, 2)
ASIN = re.compile(r"click\[b[0-9a-z]{9}\]")


@pytest.fixture(scope="module")
def env() -> WebShopEnv:
    return WebShopEnv()


def _task(index: int):
    return next(t for t in list_tasks(split="eval_in") if t.source.endswith(f"/{index}"))


def _play(env: WebShopEnv, task, goal: Goal | None = None) -> tuple[list[str], float]:
    """The shopper's actions on `task` (with `goal` standing in for its goal) and reward."""
    obs = env.reset(task)
    if goal is not None:  # the env's state holds the goal; the shopper reads only `wanted`
        st = env._state
        st.goal, st.wanted = goal, Wanted.of(goal)
        obs = env._render()
    actions, reward = [], 0.0
    while obs.expert is not None and len(actions) < EXPERT_LIMIT:
        actions.append(obs.expert)
        res = env.step(obs.expert)
        obs, reward = res.observation, res.reward
    return actions, reward


@pytest.mark.parametrize("index", WON)
def test_shopper_wins_real_goals(env, index) -> None:
    actions, reward = _play(env, _task(index))
    assert reward == 1.0 and actions[-1] == "click[buy now]"
    assert actions[0] == env.reference(_task(index))[0]  # the first admissible search
    if index == 0:  # opened a pillow without the 28" x 28" size, went back, bought the goal's
        assert actions[1:] == ["click[b08k7ldm7q]", BACK, "click[b0743jkhbv]",
                               'click[28" x 28"]', "click[buy now]"]


def test_shopper_never_reads_the_goals_product(env) -> None:
    """A goal whose product fields are bogus gives the same actions: only the instruction
    (its text, stated options and price bound) reaches the shopper."""
    task = _task(0)
    goal = env.goal(task)
    bogus = dataclasses.replace(goal, asin="B000000000", name="bogus", query="bogus",
                                attributes=("bogus",), product_category="bogus",
                                category="beauty", weight=0.0)
    assert Wanted.of(bogus) == Wanted.of(goal)
    assert _play(env, task, bogus)[0] == _play(env, task)[0]


def test_labels_follow_a_trajectory_that_deviated(env) -> None:
    """DAgger: each label is the shopper's action at the state the policy reached."""
    task = _task(1)
    goal = env.goal(task)
    obs = env.reset(task)
    obs = env.step(obs.expert).observation  # the results page
    pick = obs.expert
    assert pick == f"click[{goal.asin.lower()}]"
    wrong = next(a for a in obs.admissible if ASIN.fullmatch(a) and a != pick)
    obs = env.step(wrong).observation  # a product the shopper would not have opened
    assert obs.expert == BACK
    assert env.step("click[features]").observation.expert == BACK  # sub-page -> item
    env.step(BACK)
    obs = env.step(BACK).observation  # back on the results, the opened product marked
    assert f"[clicked button] {wrong[6:-1].upper()}" in obs.text and obs.expert == pick
    assert env.step(NEXT).observation.expert == BACK  # its pick is on page 1
    env.step(BACK)
    obs = env.step(pick).observation
    assert obs.expert == "click[black]"
    obs = env.step("click[blue]").observation  # the wrong colour: the label fixes it
    assert obs.expert == "click[black]"
    obs = env.step("click[black]").observation
    assert obs.expert == "click[3x-large]"
    obs = env.step("search[wireless headphones]").observation  # another's search
    assert obs.expert == f"search[{Wanted.of(goal).queries[0]}]"
    obs = env.step("click[back to search]").observation
    assert obs.expert == obs.admissible[0]  # a fresh session: the first search again
    for _ in range(6):
        res = env.step(obs.expert)
        obs = res.observation
        if res.done:
            break
    assert res.done and res.reward == 1.0 and obs.expert is None


def test_results_pages_price_bound_and_giving_up() -> None:
    """Pure decisions: a result over the price bound is never opened, a page with no
    candidate leads on, then to the next admissible query, then the shopper gives up."""
    want = Wanted(description="red wool socks", options={"size": "large"}, price_upper=20.0,
                  queries=("red wool socks with size: large", "red wool socks"))
    cheap = Listing("B000000001", "Blue cotton socks", 5.0)
    dear = Listing("B000000002", "Red wool socks", 25.0)
    view = View(page="results", query=want.queries[0], hits=[dear, cheap] + [dear] * 9)
    assert next_action(want, view) == "click[b000000001]"  # the title matches worse
    lacking = dataclasses.replace(view, opened={cheap.asin: {"size": ["small"]}})
    assert next_action(want, lacking) == NEXT
    assert next_action(want, dataclasses.replace(lacking, page_num=2)) == \
        "search[red wool socks]"
    assert next_action(want, dataclasses.replace(lacking, page_num=2,
                                                 query="red wool socks")) is None
    item = dataclasses.replace(view, page="item", item=cheap.asin,
                               opened={cheap.asin: {"size": ["small", "large"]}})
    assert next_action(want, item) == "click[large]"
    chosen = dataclasses.replace(item, chosen={"size": "large"})
    assert next_action(want, chosen) == "click[buy now]"
    assert next_action(want, View(page="done")) is None


def test_webshop_has_an_expert_and_references_use_it(tmp_path) -> None:
    """Stage `references` with `env.demos: expert` on WebShop: the train games are the
    shopper's wins (its own labels), eval games walkthroughs, and the ceiling is played."""
    from jerp import paths
    from jerp.metrics_schema import ReferenceStats, read_record
    from jerp.records import read_tasks, read_trajectories
    from jerp.stages import prepare, references

    assert env_spec("webshop").expert
    p = parse_params({"env": {"name": "webshop", "data_dir": str(resolve_data_dir()),
                              "max_steps": 15, "train_per_type": 1, "eval_per_type": 1,
                              "task_types": ["beauty", "grocery"]},
                      "warmstart": {"games_per_type": 0}, "runner": {"kind": "local"}})
    prepare.run(p, tmp_path)
    references.run(p, tmp_path)
    tl = read_tasks(tmp_path / paths.tasks_file())
    train = {t.task_id for t in tl.tasks("train")}
    refs = read_trajectories(tmp_path / paths.references_file())
    for r in refs:
        if r.task_id in train and r.reference_kind == "expert":
            assert r.won and all(s.expert == s.action for s in r.steps)
        else:
            assert r.reference_kind == "walkthrough"
    demos = read_record(tmp_path / paths.references_stats_file(), ReferenceStats).demos
    assert demos.asked == "expert" and demos.games == len(train) == 2
    assert demos.by["expert"] >= 1  # measured: both
    ceiling = read_trajectories(tmp_path / paths.ceiling_file())
    assert {t.task_id for t in ceiling} == {t.task_id for t in tl.tasks(p.env.eval_split)}
    assert all(t.reference_kind == "expert" and t.n_steps <= 15 for t in ceiling)
