"""reflect/revise stages on real walkthroughs: wins accumulate, proposals are logged,
only accepted ones reach the pool, and the LLM reflector runs on the real local model."""

import json

import pytest

from jerp import paths
from jerp.config import ParamsError, parse_params
from jerp.memory.pool import empty_pool, normalise
from jerp.records import (
    StepRecord,
    Trajectory,
    read_proposals,
    read_snapshot,
    read_trajectories,
    write_jsonl,
    write_snapshot,
    write_trajectories,
)
from jerp.stages import reflect, revise

GAME = "train/pick_heat_then_place_in_recep-Mug-None-CoffeeMachine-24/trial_T20190907_144750_235743"


def _traj(tid, actions, won, source="rollout"):
    return Trajectory(
        traj_id=tid, task_id=GAME, env="alfworld", split="train",
        task_type="pick_heat_then_place_in_recep", goal="put a hot mug in coffeemachine.",
        steps=[StepRecord(observation="...", admissible_count=9, action=a) for a in actions],
        reward=float(won), won=won, n_steps=len(actions), source=source)


def _task_row(tid):
    """A tasks.json row of a train game (rft_data reads only ids and splits)."""
    return {"task_id": tid, "env": "alfworld", "split": "train",
            "task_type": "pick_heat_then_place_in_recep", "source": tid}


def _ref(tid, kind=None):
    return _traj(f"ref:{tid}", ["go to a"], True, "reference").model_copy(
        update={"task_id": tid, "reference_kind": kind})


@pytest.fixture
def run_dir(tmp_path, alf_root):
    walk = json.loads((alf_root / "json_2.1.1" / GAME / "game.tw-pddl").read_text())["walkthrough"]
    ref = _traj(f"ref:{GAME}", walk, True, "reference")
    no_heat = [a for a in walk if not a.startswith("heat ")]
    write_trajectories(tmp_path / paths.references_file(), [ref])
    write_trajectories(tmp_path / paths.rollouts_file(1), [
        _traj("roll1:a#0", no_heat, False), _traj("roll1:a#1", walk, True)])
    write_snapshot(tmp_path / paths.rules_file(0), empty_pool(10))
    write_jsonl(tmp_path / paths.wins_file(0), [])
    return tmp_path


def test_contrastive_reflect_then_revise(run_dir):
    p = parse_params({"iterations": {1: {"prev": 0}}, "eval_iterations": [0, 1]})
    props = reflect.run(p, run_dir, 1, 0)
    assert [t.traj_id for t in read_trajectories(run_dir / paths.wins_file(1))] == ["roll1:a#1"]
    assert any(x.op == "ADD" and "heat" in x.text.lower() for x in props)
    snap, counts = revise.run(p, run_dir, 1, 0)
    assert counts.get("ADD", 0) >= 1
    assert read_snapshot(run_dir / paths.rules_file(1)) == snap
    assert any("heat" in r.text.lower() for r in snap.rules)


def test_react_method_passes_the_pool_through(run_dir):
    p = parse_params({"run": {"method": "react"}, "iterations": {1: {"prev": 0}},
                      "eval_iterations": [0, 1]})
    assert reflect.run(p, run_dir, 1, 0) == []
    snap, _ = revise.run(p, run_dir, 1, 0)
    assert snap.rules == [] and snap.iteration == 1


@pytest.mark.parametrize("method", ["h2r", "jerp_h2r"])
def test_h2r_methods_reflect_in_hindsight_into_the_hierarchy(run_dir, method):
    from jerp.agents import step_memory_for
    from jerp.memory.base import Query
    from jerp.memory.choose import memory_for
    from jerp.memory.executor import SubgoalMemory

    p = parse_params({"run": {"method": method}, "iterations": {1: {"prev": 0}},
                      "eval_iterations": [0, 1]})
    props = reflect.run(p, run_dir, 1, 0)
    assert {x.level for x in props} == {"planning", "execution"}
    snap, counts = revise.run(p, run_dir, 1, 0)
    assert counts["ADD"] == len(props)
    plan = next(r for r in snap.rules if r.level == "planning" and r.text.startswith("Plan"))
    # this game's walkthrough ends with the heat (its four actions win)
    assert plan.text == ("Plan for put a hot mug in coffeemachine: 1. find and take the mug "
                         "2. heat the mug with the microwave")
    # the failure stopped before the heat: an execution insight for that subgoal
    (stalled,) = [r for r in snap.rules if "ran out of steps" in r.text]
    assert (stalled.level, stalled.scope) == ("execution", "heat the mug with the microwave")
    assert stalled.provenance[0] == "roll1:a#0" and "go to a microwave" in stalled.text
    memory = memory_for(p, snap, run_dir)
    assert memory.retrieve(Query(plan.scope, "put a hot cup in coffeemachine."), 1)[0].id \
        == plan.id
    assert step_memory_for(p, snap) == SubgoalMemory(snap, "alfworld", 2, 8)
    assert step_memory_for(parse_params({}), snap) is None  # jerp: the flat pool, no slot
    ablated = p.model_copy(update={"rules": p.rules.model_copy(update={"subgoal_slot": False})})
    assert step_memory_for(ablated, snap) is None  # the slot's ablation: memories, no slot


@pytest.mark.slow
def test_llm_reflector_on_the_real_local_model(run_dir, model_cache, monkeypatch):
    """The 135M model rarely writes grammatical operations: whatever it writes is parsed
    (the logged proposals are the parse of its answer), rejected lines are logged with a
    reason, and only accepted ones reach the pool."""
    from jerp import llm
    from jerp.memory.reflect.grammar import parse_operations

    answers: list[str] = []

    def recording(*args):
        generate = real(*args)
        return lambda prompt: answers.append(generate(prompt)) or answers[-1]

    real = llm.llm_generate
    monkeypatch.setattr(llm, "llm_generate", recording)
    p = parse_params({"rules": {"reflector": "llm", "max_ops": 3},
                      "policy": {"cache_dir": str(model_cache)},
                      "iterations": {1: {"prev": 0}}, "eval_iterations": [0, 1]})
    reflect.run(p, run_dir, 1, 0)
    logged = read_proposals(run_dir / paths.proposals_file(1))
    # one failed rollout with a real success to contrast: one answer, a real generation
    assert len(answers) == 1 and answers[0].strip()
    ok, rejected = parse_operations(answers[0], empty_pool(10), 3, p.rules.max_rule_chars)
    assert [(x.op, x.text, x.accepted) for x in logged] == [
        (x.op, x.text, x.accepted) for x in ok + rejected]
    assert all(x.reject_reason for x in rejected)
    snap, counts = revise.run(p, run_dir, 1, 0)
    # the pool started empty, so the only operation the parser can accept is an ADD (the
    # others name a rule), and revise applies every accepted one (a repeated text as an
    # upvote of its first): the pool holds the accepted texts and nothing rejected
    assert {x.op for x in ok} <= {"ADD"}
    assert counts == ({"ADD": len(ok)} if ok else {})
    assert {r.text for r in snap.rules} <= {x.text.strip() for x in ok}
    assert len(snap.rules) == len({normalise(x.text) for x in ok})


def test_state_games_are_unplayed_eval_games_outside_the_task_list(tmp_path, alf_root):
    """eval.state_games_per_type: more games of the eval split, none of them played ones,
    replayed by stage `states` into their own file. data/tasks.json does not change with
    them, so ranking more states leaves every training stage's inputs as they were."""
    from jerp.stages import prepare, states

    types = ["pick_and_place_simple", "pick_clean_then_place_in_recep"]
    env = {"data_dir": str(alf_root), "eval_per_type": 1, "task_types": types}
    p = parse_params({"env": env, "eval": {"state_games_per_type": 1}})
    tl = prepare.run(p, tmp_path)
    before = (tmp_path / paths.tasks_file()).read_bytes()
    played = {t.task_id for t in tl.tasks("eval_out")}
    extra = states.state_games(p, tmp_path)
    assert len(played) == 2 and len(extra) == 2
    assert not played & {t.task_id for t in extra}
    assert {t.split for t in extra} == {"eval_out"}  # evaluate ranks them with the eval split
    assert {t.task_type for t in extra} == set(types)

    refs = states.run(p, tmp_path)
    assert [r.task_id for r in refs] == [t.task_id for t in extra] and all(r.won for r in refs)
    assert [r.task_id for r in read_trajectories(tmp_path / paths.state_references_file())
            ] == [t.task_id for t in extra]
    prepare.run(parse_params({"env": env}), tmp_path)
    assert (tmp_path / paths.tasks_file()).read_bytes() == before
    assert states.run(parse_params({"env": env}), tmp_path) == []


def test_expel_reflect_adds_a_success_set_insight(run_dir):
    """The walkthrough and the rollout's win form a set of two successes of the type."""
    from jerp.memory.reflect.successes import PATTERN_PREFIX

    p = parse_params({"run": {"method": "expel"}, "rules": {"max_ops": 3},
                      "iterations": {1: {"prev": 0}}, "eval_iterations": [0, 1]})
    props = reflect.run(p, run_dir, 1, 0)
    assert props[0].op == "ADD" and props[0].text.startswith(PATTERN_PREFIX)
    assert "heat the target object" in props[0].text
    assert any(x.op == "ADD" and not x.text.startswith(PATTERN_PREFIX) for x in props[1:])
    assert sum(x.accepted for x in props) <= 3
    snap, counts = revise.run(p, run_dir, 1, 0)
    assert counts["ADD"] == sum(x.op == "ADD" for x in props)


def test_rft_data_without_own_wins_is_the_supervised_control(tmp_path):
    """finetune.rft_wins off: RFT imitates the reference successes only (issue 29's
    supervised-only control); on: the agent's wins so far too."""
    from jerp.records import TaskList, write_tasks
    from jerp.stages.finetune import rft_data

    def with_candidates(t: Trajectory) -> Trajectory:
        return t.model_copy(update={"steps": [s.model_copy(update={"admissible": [s.action]})
                                              for s in t.steps]})

    ref = with_candidates(_traj(f"ref:{GAME}", ["go to a", "take b"], True, "reference"))
    win = with_candidates(_traj("roll1:a#1", ["go to a", "take b"], True))
    task = {"task_id": GAME, "env": "alfworld", "split": "train",
            "task_type": "pick_heat_then_place_in_recep", "source": GAME}
    write_tasks(tmp_path / paths.tasks_file(),
                TaskList(env="alfworld", seed=0, splits={"train": [task]}))
    write_trajectories(tmp_path / paths.wins_file(1), [win])
    both = rft_data(parse_params({}), tmp_path, 1, [ref])
    control = rft_data(parse_params({"finetune": {"rft_wins": False}}), tmp_path, 1, [ref])
    assert [t.traj_id for t in both] == [ref.traj_id, win.traj_id]
    assert [t.traj_id for t in control] == [ref.traj_id]


def test_rft_data_without_fallbacks_keeps_expert_demonstrations_only(tmp_path):
    """finetune.rft_fallbacks off: the walkthrough references (games the expert lost) leave
    RFT, own and rotating ones alike; the rotation then deals the expert's games only.
    Without expert demonstrations there is nothing to keep: a clear error."""
    from jerp.records import TaskList, write_tasks
    from jerp.stages.finetune import rft_data

    write_tasks(tmp_path / paths.tasks_file(), TaskList(env="alfworld", seed=0, splits={
        "train": [_task_row("t1"), _task_row("t2")],
        "warmstart": [_task_row(w) for w in ("w1", "w2", "w3")]}))
    write_trajectories(tmp_path / paths.wins_file(1), [])
    refs = [_ref("t1", "expert"), _ref("t2", "walkthrough"), _ref("w1", "walkthrough"),
            _ref("w2", "expert"), _ref("w3", "expert")]
    on = parse_params({"finetune": {"rft_references": 2}})
    off = parse_params({"finetune": {"rft_references": 2, "rft_fallbacks": False}})
    assert [t.task_id for t in rft_data(on, tmp_path, 1, refs)] == ["t1", "t2", "w1", "w2"]
    assert [t.task_id for t in rft_data(off, tmp_path, 1, refs)] == ["t1", "w2", "w3"]
    with pytest.raises(ParamsError, match=r"rft_fallbacks.*env\.demos: expert"):
        parse_params({"env": {"demos": "walkthrough"}, "finetune": {"rft_fallbacks": False}})


def test_rollouts_visit_the_next_warm_start_games_each_iteration():
    """rollout.warmstart_games k: the train games, then k warm-start games dealt one task
    type at a time; the next iteration plays the next k, wrapping round; k 0: train only."""
    from jerp.envs.base import Task
    from jerp.stages.rollout import rollout_tasks

    def task(ty: str, n: int) -> Task:
        return Task(f"train/{ty}-{n}", "alfworld", "train", ty, f"{ty}-{n}")

    train = [task("heat", 9)]
    warm = [task(ty, n) for ty in ("pick", "heat") for n in (2, 0, 1)]  # any order
    names = [[t.task_id.removeprefix("train/") for t in rollout_tasks(train, warm, 2, i)]
             for i in (1, 2, 3, 4)]
    assert names == [["heat-9", "heat-0", "pick-0"], ["heat-9", "heat-1", "pick-1"],
                     ["heat-9", "heat-2", "pick-2"], ["heat-9", "heat-0", "pick-0"]]
    assert rollout_tasks(train, warm, 0, 1) == train
    assert rollout_tasks(train, [], 4, 1) == train


def test_fresh_games_come_before_warm_start_games_and_are_dealt_the_same_way():
    """rollout.fresh_games k: after the train games, iteration i's k fresh games (dealt as
    the warm-start games are), then its warm-start games; k 0: none of them."""
    from jerp.envs.base import Task
    from jerp.stages.rollout import rollout_tasks

    def task(ty: str, n: int) -> Task:
        return Task(f"train/{ty}-{n}", "alfworld", "train", ty, f"{ty}-{n}")

    train, warm = [task("heat", 9)], [task("pick", 5)]
    fresh = [task(ty, n) for ty in ("pick", "heat") for n in (1, 0)]
    names = [[t.task_id.removeprefix("train/")
              for t in rollout_tasks(train, warm, 1, i, fresh, 2)] for i in (1, 2, 3)]
    assert names == [["heat-9", "heat-0", "pick-0", "pick-5"],
                     ["heat-9", "heat-1", "pick-1", "pick-5"],
                     ["heat-9", "heat-0", "pick-0", "pick-5"]]
    assert rollout_tasks(train, warm, 0, 1, fresh, 0) == train


def test_fresh_games_are_the_train_games_outside_the_train_and_warm_start_splits(
        tmp_path, alf_root):
    """prepare's `fresh` split: every train game of the run's types that neither the loop's
    train games nor the warm start hold; the references stage demonstrates them with the
    others. Off (the default), tasks.json has no such split: runs without it are as before."""
    from jerp.envs.registry import FRESH, WARMSTART, sample_split
    from jerp.stages import prepare, references

    env = {"data_dir": str(alf_root), "train_per_type": 1,
           "task_types": ["pick_cool_then_place_in_recep"]}
    base = {"env": env, "warmstart": {"games_per_type": 3}}
    off = prepare.run(parse_params(base), tmp_path)
    assert FRESH not in off.splits
    tl = prepare.run(parse_params({**base, "rollout": {"fresh_games": 1}}), tmp_path)
    assert {s: tl.splits[s] for s in off.splits} == off.splits  # the other splits unchanged
    ids = {s: {t.task_id for t in tl.tasks(s)} for s in ("train", WARMSTART, FRESH)}
    every = {t.task_id for t in sample_split(parse_params(base).env, alf_root, "train", 0,
                                               per_type=1000)}
    assert len(ids["train"]) == 1 and len(ids[WARMSTART]) == 3
    assert ids[FRESH] == every - ids["train"] - ids[WARMSTART] and len(every) >= 20

    learned = {t.task_id for t in references.demonstrated(tl)}
    assert learned == ids["train"] | ids[WARMSTART] | ids[FRESH]


def test_rft_data_counts_a_rolled_out_warm_start_game_as_its_own(tmp_path):
    """A warm-start game the iteration rolled out gives RFT its reference as a rollout
    task's own, once: not again in the rotating share of the other warm-start games."""
    from jerp.records import TaskList, write_tasks
    from jerp.stages.finetune import rft_data

    write_tasks(tmp_path / paths.tasks_file(), TaskList(env="alfworld", seed=0, splits={
        "train": [_task_row("t")], "warmstart": [_task_row(w) for w in ("w1", "w2", "w3")]}))
    write_trajectories(tmp_path / paths.wins_file(1), [])
    refs = [_ref(x) for x in ("t", "w1", "w2", "w3")]
    p = parse_params({"finetune": {"rft_references": 2}})
    assert [t.task_id for t in rft_data(p, tmp_path, 1, refs)] == ["t", "w1", "w2"]
    assert [t.task_id for t in rft_data(p, tmp_path, 1, refs, {"t", "w2"})] == [
        "t", "w2", "w1", "w3"]
