"""H2R's planner: options the executor understands (in an order drawn per goal), the
policy's constrained choice with its cap, the endpoint's numbered list mapped onto
options, the labelled fallback; a success's realised plan as the planner's decisions,
built with the very prompts it acts with; on the real model and a real ALFWorld game, a
policy-written plan in the trajectory, and a warm-start step that learns the decisions."""

from __future__ import annotations

from functools import partial

import pytest

from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS
from jerp.envs.base import Task
from jerp.envs.registry import SPECS
from jerp.envs.webshop.actions import WEBSHOP_ACTIONS
from jerp.memory.hierarchy import plan_text
from jerp.memory.planner import (
    DONE,
    PLAN_SYSTEM,
    EpisodePlanner,
    PlanChoice,
    choice_prompt,
    choose_plan,
    match_option,
    option_order,
    parse_written_plan,
    plan_cap,
    plan_choices,
    plan_options,
)
from jerp.metrics import plan_sources
from jerp.records import Rule, RuleSnapshot, StepRecord, Trajectory

COOL = "pick_cool_then_place_in_recep"
GOAL = "Your task is to: put a cool mug in shelf."
TASK = Task("t", "alfworld", "eval_out", COOL, "")
ABSTRACTION = ["find and take the mug", "clean the mug with the sinkbasin",
               "heat the mug with the microwave", "cool the mug with the fridge",
               "put the mug in/on the shelf"]  # subgoal_options' own order
OPTIONS = option_order(GOAL, ABSTRACTION)  # as the planner lists and offers them
PLAN = ["find and take the mug", "cool the mug with the fridge", "put the mug in/on the shelf"]
EMPTY = RuleSnapshot(iteration=0, capacity=20, rules=[])
REMEMBERED = RuleSnapshot(iteration=1, capacity=20, rules=[Rule(
    id="R1", score=2, scope=COOL, level="planning", created=1, updated=1,
    text=plan_text("cool some tomato and put it in microwave.", [
        "find and take the tomato", "go to the fridge", "cool the tomato with the fridge",
        "put the tomato in/on the microwave"]))])
TYPES = SPECS["alfworld"].task_types


def scripted(picks: list[str], seen: list[tuple[str, list[str]]] | None = None):
    """A `Score` that prefers picks[i] at the i-th call (DONE once they run out)."""
    calls = iter(picks)

    def score(prompt: str, options: list[str]) -> list[float]:
        if seen is not None:
            seen.append((prompt, list(options)))
        want = next(calls, DONE)
        return [float(o == want) for o in options]

    return score


def test_options_are_the_subgoal_names_the_abstraction_closes():
    assert ALFWORLD_ACTIONS.subgoal_options(GOAL) == ABSTRACTION
    assert plan_options(ALFWORLD_ACTIONS, GOAL) == OPTIONS
    assert sorted(OPTIONS) == sorted(ABSTRACTION)
    light = plan_options(ALFWORLD_ACTIONS, "look at bowl under the desklamp.")
    assert "turn on the desklamp" in light and len(light) == 6
    restated = ["find and take the mug", "go to the fridge"]  # remembered steps, restated
    assert plan_options(ALFWORLD_ACTIONS, GOAL, restated) == option_order(
        GOAL, [*ABSTRACTION, "go to the fridge"])
    assert sorted(plan_options(WEBSHOP_ACTIONS, "i want a red shirt")) == sorted([
        "search for the product", "open a matching product", "choose the options", "buy"])
    # every default plan is made of options: the policy can write what the table has
    for t in TYPES:
        goal = "look at bowl under the desklamp." if "light" in t else GOAL
        assert set(ALFWORLD_ACTIONS.default_plan(t, goal)) <= set(
            plan_options(ALFWORLD_ACTIONS, goal))


def test_option_order_is_drawn_per_goal_and_stable():
    """Listed and offered by a hash of (goal, option): the same for a goal wherever it is
    computed (ALFWorld's lead-in or not), a permutation, and not one order for all goals,
    so copying the list is no plan (the untrained policy copies it)."""
    assert option_order("Your task is to: put a cool mug in shelf.", ABSTRACTION) == OPTIONS
    assert option_order(GOAL, ABSTRACTION[::-1]) == OPTIONS  # the input's order is ignored
    goals = [f"put a cool {o} in {r}." for o in ("mug", "apple", "egg", "bread")
             for r in ("shelf", "countertop", "diningtable")]
    orders = [tuple(s.split()[0] for s in plan_options(ALFWORLD_ACTIONS, g)) for g in goals]
    assert len(set(orders)) > len(goals) // 2  # many orders, none privileged
    assert orders.count(("find", "clean", "heat", "cool", "put")) < 3


def test_cap_is_the_longest_default_plan_plus_slack():
    assert plan_cap(ALFWORLD_ACTIONS, TYPES, GOAL) == 4 + 2  # pick_two: take put take put
    assert plan_cap(WEBSHOP_ACTIONS, ("webshop",), "a shirt with color: red") == 4 + 2


def test_policy_chooses_step_by_step_until_done():
    seen: list[tuple[str, list[str]]] = []
    plan = choose_plan(scripted(PLAN, seen), GOAL, ["Cool it first."], OPTIONS, cap=6)
    assert plan == PLAN
    assert len(seen) == 4  # three steps, then DONE
    assert DONE not in seen[0][1] and seen[1][1] == [*OPTIONS, DONE]  # no empty plan
    prompt = seen[2][0]
    assert prompt == choice_prompt(GOAL, ["Cool it first."], OPTIONS, PLAN[:2])
    assert prompt.endswith("Task: put a cool mug in shelf.\nPlan:\n"
                           "1. find and take the mug\n2. cool the mug with the fridge\n3.")
    assert "Useful experience:\n- Cool it first.\n" in prompt


def test_policy_plan_is_capped_and_may_repeat_a_subgoal():
    never_done = scripted(["find and take the mug"] * 10)
    assert choose_plan(never_done, GOAL, [], OPTIONS, cap=3) == ["find and take the mug"] * 3


@pytest.mark.parametrize("line, option", [
    ("1. Find and take the mug from the countertop.", "find and take the mug"),
    ("2) take mug", "find and take the mug"),
    ("- Cool it in the fridge", "cool the mug with the fridge"),
    ("3: Put the mug in the shelf", "put the mug in/on the shelf"),
    ("4. go to the fridge", None),  # no milestone: names no subgoal
    ("open the fridge", None),
    ("Done", None),
    ("", None),
])
def test_written_line_maps_onto_the_option_it_names(line, option):
    assert match_option(line, OPTIONS, ALFWORLD_ACTIONS.rule_verbs) == option


def test_written_plan_drops_what_names_no_option_and_is_capped():
    text = ("Here is the plan:\n1. Go to the countertop\n2. Take the mug\n"
            "3. Cool the mug with the fridge\n4. Put the mug on the shelf\n5. Done")
    assert parse_written_plan(text, OPTIONS, ALFWORLD_ACTIONS.rule_verbs, 6) == PLAN
    assert parse_written_plan(text, OPTIONS, ALFWORLD_ACTIONS.rule_verbs, 2) == PLAN[:2]
    assert parse_written_plan("I cannot help with that.", OPTIONS,
                              ALFWORLD_ACTIONS.rule_verbs, 6) == []
    web = ("1. search for red shirts\n2. click the first result\n3. open the product page\n"
           "4. select size large\n5. buy it")
    assert parse_written_plan(web, plan_options(WEBSHOP_ACTIONS, ""),
                              WEBSHOP_ACTIONS.rule_verbs, 6) == [
        "search for the product", "open a matching product", "choose the options", "buy"]


def planner(pool: RuleSnapshot, **model) -> EpisodePlanner:
    return EpisodePlanner(pool, ALFWORLD_ACTIONS, TYPES, 3, **model)


def test_sources_and_fallbacks_are_labelled():
    written = planner(EMPTY, write=lambda _: "1. take the mug\n2. cool it\n3. put it on shelf")
    assert (written(TASK, GOAL).steps, written(TASK, GOAL).source) == (PLAN, "endpoint")
    chosen = planner(EMPTY, score=scripted(PLAN[::-1]))(TASK, GOAL)
    assert (chosen.steps, chosen.source) == (PLAN[::-1], "policy")
    restated = ["find and take the mug", "go to the fridge", "cool the mug with the fridge",
                "put the mug in/on the shelf"]
    for model in ({}, {"write": lambda _: "Sorry, no."}):  # memory planner; nothing maps
        got = planner(REMEMBERED, **model)(TASK, GOAL)
        assert (got.steps, got.source) == (restated, "memory")
        got = planner(EMPTY, **model)(TASK, GOAL)
        assert (got.steps, got.source) == (ALFWORLD_ACTIONS.default_plan(COOL, GOAL), "default")


def test_remembered_steps_are_options_and_memories_are_shown():
    seen: list[tuple[str, list[str]]] = []
    planner(REMEMBERED, score=scripted(["go to the fridge"], seen))(TASK, GOAL)
    prompt, offered = seen[0]
    assert offered == plan_options(ALFWORLD_ACTIONS, GOAL, ["go to the fridge"])
    assert "- Plan for cool some tomato and put it in microwave: 1. find and take" in prompt


def test_planner_for_follows_rules_planner():
    from jerp.agents import planner_for, step_memory_for
    from jerp.config import parse_params

    class Valuer:  # stands in for the Agent: what option_values was asked
        def option_values(self, env: str, prompt: str, options: list[str]) -> list[float]:
            return [float(env == "alfworld" and o == options[-1]) for o in options]

    p = parse_params({"run": {"method": "h2r"}})
    memory = step_memory_for(p, EMPTY)
    agent = Valuer()
    built = planner_for(p, None, agent, memory)
    assert isinstance(built, EpisodePlanner) and built.write is None
    assert built.k == p.rules.top_k and built.task_types == TYPES
    assert built(TASK, GOAL).steps[0] == OPTIONS[-1]  # the agent's values chose it
    mem = parse_params({"run": {"method": "h2r"}, "rules": {"planner": "memory"}})
    assert planner_for(mem, None, agent, memory).score is None
    assert planner_for(parse_params({}), None, agent, None) is None  # no executor: no plan
    # the reflectors' endpoint never takes the plan over: only rules.planner endpoint does
    served = {"llm_endpoint": "http://127.0.0.1:9/v1"}
    both = parse_params({"run": {"method": "h2r"}, "rules": served})
    kept = planner_for(both, None, agent, memory)
    assert kept.score is not None and kept.write is None


def test_planner_endpoint_writes_with_rules_llm_endpoint(monkeypatch):
    from jerp import llm
    from jerp.agents import planner_for, step_memory_for
    from jerp.config import parse_params

    asked = []

    def generate(p, root, system):
        asked.append((p.rules.llm_endpoint, system))
        return lambda prompt: "1. take the mug"

    monkeypatch.setattr(llm, "llm_generate", generate)
    p = parse_params({"run": {"method": "h2r"}, "rules": {
        "planner": "endpoint", "llm_endpoint": "http://127.0.0.1:9/v1"}})
    built = planner_for(p, None, object(), step_memory_for(p, EMPTY))
    assert built.score is None and asked == [("http://127.0.0.1:9/v1", PLAN_SYSTEM)]
    got = built(TASK, GOAL)
    assert (got.steps, got.source) == (["find and take the mug"], "endpoint")


def test_planner_endpoint_requires_llm_endpoint():
    from jerp.config import ParamsError, parse_params

    with pytest.raises(ParamsError,
                       match=r"rules\.planner = 'endpoint' needs rules\.llm_endpoint"):
        parse_params({"run": {"method": "h2r"}, "rules": {"planner": "endpoint"}})
    assert parse_params({"rules": {"planner": "endpoint",
                                   "llm_endpoint": "http://x/v1"}}).rules.planner == "endpoint"


# ---------------------------------------------------------------- teaching the planner


def _won(goal: str, actions: list[str], task_type: str = COOL) -> Trajectory:
    steps = [StepRecord(observation=f"obs {i}", admissible_count=1, action=a, admissible=[a])
             for i, a in enumerate(actions)]
    return Trajectory(traj_id="ref:t", task_id="t", env="alfworld", split="train",
                      task_type=task_type, goal=goal, steps=steps, reward=1.0, won=True,
                      n_steps=len(steps), source="reference")


# go to, take | go to fridge, cool | go to shelf, move: three closed segments
COOL_WALK = ["go to countertop 1", "take mug 1 from countertop 1", "go to fridge 1",
             "cool mug 1 with fridge 1", "go to shelf 1", "move mug 1 to shelf 1"]


def test_a_realised_plan_becomes_the_planners_choices_then_done():
    choices = planner(EMPTY).realised_choices(_won(GOAL, COOL_WALK))
    assert [c.offered[c.chosen] for c in choices] == [*PLAN, DONE]
    for i, c in enumerate(choices):
        assert c.prompt == choice_prompt(GOAL, [], OPTIONS, PLAN[:i])
        assert list(c.offered) == (OPTIONS if i == 0 else [*OPTIONS, DONE])
    assert choices[0].prompt.endswith("Plan:\n1.")
    assert choices[-1].prompt.endswith("3. put the mug in/on the shelf\n4.")


def test_plans_the_planner_cannot_write_teach_nothing():
    assert plan_choices(GOAL, [], OPTIONS, [], 6) == []  # an empty plan
    assert plan_choices(GOAL, [], OPTIONS, ["go to the fridge"], 6) == []  # no option
    assert plan_choices(GOAL, [], OPTIONS, PLAN, 2) == []  # past the cap
    at_cap = plan_choices(GOAL, [], OPTIONS, PLAN, 3)  # the planner stops without DONE
    assert [c.offered[c.chosen] for c in at_cap] == PLAN
    assert planner(EMPTY).realised_choices(_won(GOAL, COOL_WALK[:1])) == []  # no milestone


def test_training_builds_the_prompts_and_orders_the_planner_acts_with():
    """What the planner scored while writing PLAN (with a remembered plan shown and its
    steps offered, too) is, decision for decision, what the teacher builds for PLAN."""
    for pool in (EMPTY, REMEMBERED):
        seen: list[tuple[str, list[str]]] = []
        acted = planner(pool, score=scripted(PLAN, seen))(TASK, GOAL)
        assert acted.steps == PLAN
        taught = planner(pool).choices(TASK, GOAL, PLAN)
        assert [(c.prompt, list(c.offered)) for c in taught] == seen
        assert [c.offered[c.chosen] for c in taught] == [*PLAN, DONE]


def test_success_items_carry_the_planner_decisions():
    from jerp.policy.experience import success_items

    traj = _won(GOAL, COOL_WALK)
    teach = planner(EMPTY).realised_choices
    (item,) = success_items([traj], plan_for=teach)
    assert len(item.targets) == len(COOL_WALK) and len(item.plan) == len(PLAN) + 1
    assert all(isinstance(c, PlanChoice) for c in item.plan)
    (plain,) = success_items([traj])
    assert plain.plan == []
    bare = traj.model_copy(update={"steps": [s.model_copy(update={"admissible": None})
                                             for s in traj.steps]})
    (only_plan,) = success_items([bare], plan_for=teach)  # no step target: the plan still
    assert only_plan.targets == {} and len(only_plan.plan) == 4


def test_old_trajectories_read_without_a_plan_and_sources_are_counted():
    old = Trajectory.model_validate({
        "traj_id": "x", "task_id": "t", "env": "alfworld", "split": "eval_out",
        "task_type": COOL, "goal": GOAL, "steps": [], "reward": 0.0, "won": False,
        "n_steps": 0})
    assert old.plan == [] and old.plan_source is None
    trajs = [old.model_copy(update={"plan_source": s})
             for s in ("policy", "policy", "default", None)]
    assert plan_sources(trajs) == {"plan_sources": {"default": 1, "policy": 2}}
    assert plan_sources([old]) == {}


def test_policy_writes_a_plan_the_trajectory_records(policy_fp32, alf_root):
    """The real 135M model plans a real ALFWorld game: every step is a subgoal name of
    the abstraction, the plan is within the cap, the executor shows its steps, and the
    trajectory records it with plan_source "policy"; the memory planner on an empty
    pool is labelled "default"."""
    from jerp.config import EnvParams, PolicyParams
    from jerp.envs.alfworld import list_tasks
    from jerp.envs.registry import env_factory
    from jerp.memory.executor import SubgoalMemory
    from jerp.policy.agent import Agent
    from jerp.policy.rollout import EpisodeSpec, play

    task = list_tasks(alf_root, "eval_out")[0]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    agent = Agent(policy_fp32, PolicyParams(history=2))
    memory = SubgoalMemory(EMPTY, "alfworld", 2, 1)  # budget 1: the slot walks the plan
    by_policy = planner(EMPTY, score=partial(agent.option_values, "alfworld"))
    (traj,) = play([EpisodeSpec(task)], make_env, agent, 3, 1, {}, env_workers=0,
                   step_memory=memory, planner=by_policy)
    assert traj.plan_source == "policy"
    options = ALFWORLD_ACTIONS.subgoal_options(traj.goal)
    assert 1 <= len(traj.plan) <= plan_cap(ALFWORLD_ACTIONS, TYPES, traj.goal)
    assert set(traj.plan) <= set(options)
    assert {s.subgoal for s in traj.steps} <= set(traj.plan)
    assert traj.steps[0].subgoal == traj.plan[0]
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert (again.plan, again.plan_source) == (traj.plan, "policy")
    (fallback,) = play([EpisodeSpec(task)], make_env, agent, 1, 1, {}, env_workers=0,
                       step_memory=memory, planner=planner(EMPTY))
    assert fallback.plan_source == "default"
    assert fallback.plan == ALFWORLD_ACTIONS.default_plan(task.task_type, fallback.goal)


@pytest.mark.slow  # LoRA steps on the real model: `make test`, not `make check`
def test_a_warm_start_step_learns_the_planner_decisions(model_cache):
    """On the real 135M model: a planner decision's training window scores its options
    exactly as the acting planner does (the same tokens, the same log-probabilities), and
    one warm-start step on the decisions of a realised plan lowers their CE."""
    from dataclasses import replace

    import torch

    from jerp.adapters import warmstart_config
    from jerp.config import LoraParams, PolicyParams, parse_params
    from jerp.policy.agent import Agent
    from jerp.policy.experience import success_items
    from jerp.policy.model import load_policy
    from jerp.policy.packing import window_scores
    from jerp.policy.train import TrainItem, pack_items, train, window_loss

    policy = load_policy("smollm2", model_cache, "float32", None, trainable=True,
                         lora=LoraParams())
    (item,) = success_items([_won(GOAL, COOL_WALK)], plan_for=planner(EMPTY).realised_choices)
    items = [TrainItem(item.traj, {}, None, item.plan)]  # the planner's decisions alone
    cfg = replace(warmstart_config(parse_params({}), seed=0), lr=1e-3, epochs=1,
                  batch_sequences=4)
    windows = pack_items(policy, items, cfg.window)
    assert len(windows) == 4  # three steps, then DONE

    policy.model.eval()
    agent = Agent(policy, PolicyParams())
    with torch.no_grad():
        for w, c in zip(windows, item.plan, strict=True):
            ids = policy.tokenizer(c.prompt, add_special_tokens=False)["input_ids"]
            assert w.tokens[:len(ids)] == ids
            acting, _ = agent.text_scores(c.prompt, list(c.offered))
            (trained,) = window_scores(policy.model, w, policy.dtype)
            assert trained.tolist() == pytest.approx(acting, abs=1e-3)
    policy.model.train()

    stats = train(policy, items, cfg)  # one batch: ce_first is the CE before the step
    assert stats.decisions == 4 and stats.optimizer_steps == 1
    with torch.no_grad():
        after = sum(float(window_loss(policy, w, cfg)[0]) for w in windows) / len(windows)
    assert after < stats.ce_first
