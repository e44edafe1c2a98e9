"""The H2R paper's baselines in the same harness: Reflexion (retries with self-reflection
notes) and ExpeL (success-set insights, similar successes as in-context examples)."""

import pytest
import yaml

from jerp.config import ExpelParams, ParamsError, ReflexionParams, RulesParams, parse_params
from jerp.envs.alfworld_actions import ALFWORLD_ACTIONS as AX
from jerp.envs.base import Task
from jerp.memory.examples import example_store, nearest, render_example, similar_successes
from jerp.memory.pool import empty_pool
from jerp.memory.reflect.reflexion import find_loop, llm_note, milestone_note
from jerp.memory.reflect.successes import (
    PATTERN_PREFIX,
    common_subsequence,
    reflect_successes,
    success_pattern,
)
from jerp.methods import METHODS, parts, warmstart_settings
from jerp.policy.prompts import EpisodeContext, header, render_experience
from jerp.policy.reflexion_trials import play_trials, success_at
from jerp.policy.rollout import EpisodeSpec
from jerp.records import Rule, RuleSnapshot, StepRecord, Trajectory, final_trials

HEAT = "pick_heat_then_place_in_recep"
NOTE_CHARS = ReflexionParams().max_note_chars  # the schema's values: no lower default
RULE_CHARS = RulesParams().max_rule_chars
EXAMPLE_ACTIONS = ExpelParams().max_example_actions


def _traj(tid, goal, actions, won, *, split="train", task_type=HEAT, reward=None, trial=0,
          task_id=None):
    return Trajectory(
        traj_id=tid, task_id=task_id or tid, env="alfworld", split=split, task_type=task_type,
        goal=goal, steps=[StepRecord(observation="o", admissible_count=3, action=a)
                          for a in actions],
        reward=float(won) if reward is None else reward, won=won, n_steps=len(actions),
        trial=trial)


EGG = "heat some egg and put it in garbagecan."
LOOPING = ["go to countertop 1", "take egg 1 from countertop 1", "go to fridge 1",
           "go to sinkbasin 1", "go to fridge 1", "go to sinkbasin 1", "go to fridge 1",
           "go to sinkbasin 1"]
S_EGG = ["go to countertop 1", "take egg 1 from countertop 1", "go to microwave 1",
         "heat egg 1 with microwave 1", "go to garbagecan 1", "move egg 1 to garbagecan 1"]
S_APPLE = ["go to diningtable 1", "take apple 2 from diningtable 1", "go to microwave 1",
           "open microwave 1", "heat apple 2 with microwave 1", "go to fridge 1",
           "move apple 2 to fridge 1"]


# ---------------------------------------------------------------- Reflexion's note


def test_find_loop_takes_the_cycle_covering_most_steps():
    assert find_loop(LOOPING) == (["go to fridge 1", "go to sinkbasin 1"], 3)
    assert find_loop(["look", "a", "a", "a", "a"]) == (["a"], 4)
    assert find_loop(["a", "b", "a", "b"]) is None  # two repeats: not yet a loop
    assert find_loop(["a", "b", "c"]) is None


def test_milestone_note_on_a_hand_made_failure():
    note = milestone_note(_traj("f", EGG, LOOPING, False, split="eval_out"), AX, NOTE_CHARS)
    assert note == (
        "You failed after 8 steps. You did: take the target object. "
        "The goal also needs: heat, move. "
        "You looped 3 times over: go to fridge 1; go to sinkbasin 1. "
        "Last actions: go to sinkbasin 1; go to fridge 1; go to sinkbasin 1. "
        "Next time: do not repeat that loop; go somewhere new; make sure you heat and move.")


def test_milestone_note_without_progress_and_cut_to_length():
    t = _traj("f", EGG, ["look", "inventory"], False)
    t.steps[1].valid = False
    note = milestone_note(t, AX, NOTE_CHARS)
    assert note == ("You failed after 2 steps. You reached no milestone. The goal also "
                    "needs: heat, move. 1 of your commands were invalid. Last actions: look; "
                    "inventory. Next time: make sure you heat and move.")
    short = milestone_note(t, AX, max_chars=60)
    assert short == "You failed after 2 steps. You reached no milestone. The..."


def test_llm_note_is_one_line_from_the_generate_callable():
    seen = []

    def generate(prompt):
        seen.append(prompt)
        return "  I looped between the fridge\nand the sink.  Next I will heat the egg. "

    note = llm_note(generate, _traj("f", EGG, LOOPING, False), NOTE_CHARS)
    assert note == "I looped between the fridge and the sink. Next I will heat the egg."
    assert "FAILURE" in seen[0] and "go to sinkbasin 1" in seen[0]


# ---------------------------------------------------------------- Reflexion's trials


def test_trials_stop_at_success_and_later_trials_see_earlier_notes():
    """A scripted agent: task a wins at its 2nd trial, b never, c at once."""
    wins_at = {"a": 1, "b": 99, "c": 0}
    calls: list[list[tuple[str, int, list[str]]]] = []

    def play(specs):
        calls.append([(s.task.task_id, s.trial, list(s.notes)) for s in specs])
        return [_traj(f"{s.task.task_id}/t{s.trial}", EGG, ["look"], s.trial >= wins_at[
            s.task.task_id], task_id=s.task.task_id, trial=s.trial) for s in specs]

    specs = [EpisodeSpec(Task(i, "alfworld", "eval_out", HEAT, "")) for i in "abc"]
    trajs = play_trials(specs, play, lambda t: f"note on {t.traj_id}", trials=3)
    assert calls == [
        [("a", 0, []), ("b", 0, []), ("c", 0, [])],
        [("a", 1, ["note on a/t0"]), ("b", 1, ["note on b/t0"])],
        [("b", 2, ["note on b/t0", "note on b/t1"])],
    ]
    assert [t.traj_id for t in trajs] == ["a/t0", "b/t0", "c/t0", "a/t1", "b/t1", "b/t2"]
    assert success_at(trajs, 3) == {"1": 0.3333, "2": 0.6667, "3": 0.6667}
    assert [(t.task_id, t.trial, t.won) for t in final_trials(trajs)] == [
        ("a", 1, True), ("b", 2, False), ("c", 0, True)]
    with pytest.raises(ValueError, match="at least 1"):
        play_trials(specs, play, str, trials=0)


def test_one_trial_is_plain_evaluation():
    specs = [EpisodeSpec(Task("a", "alfworld", "eval_out", HEAT, ""))]
    trajs = play_trials(specs, lambda sp: [_traj("a", EGG, ["look"], False)],
                        lambda t: 1 / 0, trials=1)  # no note is asked for
    assert len(trajs) == 1 and success_at(trajs, 1) == {"1": 0.0}


def test_notes_and_examples_go_in_the_header_after_the_rules():
    ctx = EpisodeContext(env="alfworld", goal=EGG, rules=["Heat it first."],
                         initial="You are in the middle of a room.",
                         examples=["Goal: heat some apple\nActions: take apple 1"],
                         notes=["I looped.", "I forgot to heat."])
    assert render_experience([], []) == ""
    h = header(ctx)
    assert h.index("- Heat it first.") < h.index("Successful examples of similar tasks:\n"
                                                  "Goal: heat some apple\nActions: take apple 1\n")
    assert h.index("Successful examples") < h.index(
        "Your earlier failed attempts at this task:\n- Trial 1: I looped.\n"
        "- Trial 2: I forgot to heat.\n")
    assert header(EpisodeContext(env="alfworld", goal=EGG)).count("attempts") == 0


# ---------------------------------------------------------------- ExpeL's examples


def test_example_store_keeps_real_train_wins_shortest_per_goal():
    store = example_store([
        _traj("ref:egg", EGG, S_EGG, True),
        _traj("roll:egg", EGG, S_EGG + ["look"], True),  # same goal, longer
        _traj("eval:egg", EGG, S_EGG, True, split="eval_out"),  # never an eval game
        _traj("roll:lost", "put a mug in sink.", ["look"], False),
        _traj("ws:partial", "buy a red shirt", ["search[shirt]"], True, reward=0.5),
        _traj("ref:apple", "heat some apple and put it in fridge.", S_APPLE, True),
    ])
    assert [t.traj_id for t in store] == ["ref:apple", "ref:egg"]


def test_nearest_ranks_by_distance_then_length():
    a = _traj("a", "goal a", ["x", "y"], True)
    b = _traj("b", "goal b", ["x"], True)
    c = _traj("c", "goal c", ["x"], True)
    dist = {"goal a": 0.1, "goal b": 0.3, "goal c": 0.3}
    assert [t.traj_id for t in nearest([c, b, a], dist, 2)] == ["a", "b"]
    assert [t.traj_id for t in nearest([a, b], {"goal b": 0.9}, 1)] == ["b"]
    assert nearest([a], dist, 0) == []


def test_render_example_cuts_long_trajectories():
    t = _traj("e", EGG, S_EGG, True)
    assert render_example(t, 2) == (f"Goal: {EGG}\nActions: go to countertop 1; "
                                    "take egg 1 from countertop 1 ... (4 more)")
    assert render_example(t, EXAMPLE_ACTIONS).endswith("move egg 1 to garbagecan 1")


@pytest.mark.slow
def test_similar_successes_returns_the_closest_goal_and_the_header_shows_it(tmp_path):
    """Real all-MiniLM-L6-v2 vectors in a LanceDB index."""
    store = example_store([
        _traj("ref:lamp", "look at pillow under the desklamp.", ["use desklamp 1"], True,
              task_type="look_at_obj_in_light"),
        _traj("ref:apple", "heat some apple and put it in fridge.", S_APPLE, True),
        _traj("ref:soap", "put two soapbar in garbagecan.", ["take soapbar 1 from sink 1"],
              True, task_type="pick_two_obj_and_place"),
    ])
    got = similar_successes(store, "heat some egg and put it in garbagecan.", 1, tmp_path)
    assert [t.traj_id for t in got] == ["ref:apple"]
    got = similar_successes(store, "examine the book with the desklamp.", 2, tmp_path)
    assert got[0].traj_id == "ref:lamp"
    ctx = EpisodeContext(env="alfworld", goal=EGG,
                         examples=[render_example(got[0], EXAMPLE_ACTIONS)])
    assert "Goal: look at pillow under the desklamp.\nActions: use desklamp 1" in header(ctx)


# ---------------------------------------------------------------- ExpeL's success sets


def test_common_subsequence_and_success_pattern():
    acts = AX.abstract(S_EGG, EGG)
    other = AX.abstract(S_APPLE, "heat some apple and put it in fridge.")
    # "go to a countertop" / "a diningtable" and "open a microwave" are not shared
    assert [a.key for a in common_subsequence(acts, other)] == [
        "take the target object", "go to a microwave", "heat the target object a microwave",
        "go to the target receptacle", "move the target object the target receptacle"]
    assert common_subsequence(acts, []) == []
    pattern = success_pattern([_traj("s1", EGG, S_EGG, True), _traj(
        "s2", "heat some apple and put it in fridge.", S_APPLE, True)], AX)
    assert [a.key for a in pattern] == ["take the target object",
                                        "heat the target object a microwave",
                                        "move the target object the target receptacle"]


PATTERN = (f"{PATTERN_PREFIX} find and take the target object, then heat the target object "
           "with a microwave, then put the target object in the target receptacle.")


def _successes():
    return [_traj("s1", EGG, S_EGG, True),
            _traj("s2", "heat some apple and put it in fridge.", S_APPLE, True),
            _traj("f", EGG, LOOPING, False),
            _traj("lone", "put a mug in sink.", ["take mug 1 from desk 1"], True,
                  task_type="pick_and_place_simple")]  # one success: no set


def _pool(text):
    return RuleSnapshot(iteration=1, capacity=10, next_id=2, rules=[
        Rule(id="R1", text=text, score=2, scope=HEAT, created=1, updated=1)])


def test_success_sets_add_then_agree_or_edit():
    props = reflect_successes(_successes(), set(), empty_pool(10), AX, RULE_CHARS)
    assert [(p.op, p.text, p.scope) for p in props] == [("ADD", PATTERN, HEAT)]
    assert "2 successes" in props[0].rationale and props[0].evidence.reference == "s1"
    # the same pattern again: UPVOTE (AGREE) only when a new success joined the set
    assert reflect_successes(_successes(), set(), _pool(PATTERN), AX, RULE_CHARS) == []
    (up,) = reflect_successes(_successes(), {"s2"}, _pool(PATTERN), AX, RULE_CHARS)
    assert (up.op, up.rule_ids, up.evidence.reference) == ("UPVOTE", ["R1"], "s2")
    (edit,) = reflect_successes(_successes(), set(), _pool(f"{PATTERN_PREFIX} take it."), AX,
                              RULE_CHARS)
    assert (edit.op, edit.rule_ids, edit.text) == ("EDIT", ["R1"], PATTERN)
    assert reflect_successes(_successes(), set(), empty_pool(10), AX, max_chars=50) == []


# ---------------------------------------------------------------- methods and params


def test_success_insights_reach_reflect_only_for_expel(tmp_path):
    """The methods table decides what the reflect stage does: ExpeL's success-set insight
    comes first in its proposals; rules_only (the same pool, no success insights) and
    reflexion (no pool) never propose it. The other flags act in evaluate:
    test_reflexion_evaluate_on_a_real_game (trials), test_expel_evaluate_shows_the_train_
    reference (examples)."""
    from jerp import paths
    from jerp.records import write_jsonl, write_snapshot, write_trajectories
    from jerp.stages import reflect

    def proposals(method: str) -> list:
        root = tmp_path / method
        (root / paths.iter_dir(1)).mkdir(parents=True)
        write_trajectories(root / paths.references_file(), [])
        write_trajectories(root / paths.rollouts_file(1), _successes())
        write_snapshot(root / paths.rules_file(0), empty_pool(10))
        write_jsonl(root / paths.wins_file(0), [])
        p = parse_params({"run": {"method": method}, "iterations": {1: {"prev": 0}},
                          "eval_iterations": [0, 1]})
        return reflect.run(p, root, 1, 0)

    expel = proposals("expel")
    assert (expel[0].op, expel[0].text, expel[0].scope) == ("ADD", PATTERN, HEAT)
    assert "2 successes" in expel[0].rationale
    assert PATTERN not in {x.text for x in proposals("rules_only")}
    assert proposals("reflexion") == []
    with pytest.raises(ValueError, match=r"unknown method 'reflection'; accepted: \[.*'expel'"):
        parts("reflection")


def _prepare(tmp_path, alf_root, method: str):
    from jerp.stages import prepare

    p = parse_params({"run": {"method": method},
                      "env": {"data_dir": str(alf_root), "task_types": [HEAT],
                              "train_per_type": 1, "eval_per_type": 1},
                      "warmstart": {"games_per_type": 1}})
    out = tmp_path / method
    prepare.run(p, out)
    return out


def test_a_methods_warm_start_settings_follow_from_run_method(tmp_path, alf_root):
    """prepare derives the warm start's settings from run.method into the file the warm start
    depends on (not run.method): jerp and policy_only write the same bytes, so DVC keeps
    one warm start for them; the H2R methods get the slotted one without asking."""
    from jerp import paths
    from jerp.records import WarmstartSettings, read_model

    files = {m: _prepare(tmp_path, alf_root, m) / paths.warmstart_settings_file()
             for m in ("jerp", "policy_only", "h2r", "jerp_h2r", "react")}
    got = {m: read_model(f, WarmstartSettings).subgoal_slots for m, f in files.items()}
    assert got == {"jerp": False, "policy_only": False, "h2r": True, "jerp_h2r": True,
                   "react": False}
    assert files["jerp"].read_bytes() == files["policy_only"].read_bytes() \
        == files["react"].read_bytes()
    assert files["h2r"].read_bytes() == files["jerp_h2r"].read_bytes() \
        != files["jerp"].read_bytes()
    # everything else prepare writes is the same for every method
    for m in ("policy_only", "h2r"):
        for rel in (paths.tasks_file(), paths.rules_file(0), paths.wins_file(0)):
            assert (tmp_path / m / rel).read_bytes() == (tmp_path / "jerp" / rel).read_bytes()
    # the slot's ablation (rules.subgoal_slot false): H2R's warm start is the plain one
    assert warmstart_settings("h2r", subgoal_slot=False) == {"subgoal_slots": False,
                                                             "plan_choices": False}
    # the policy planner learns its decisions; a planner that is not the policy does not
    assert warmstart_settings("h2r") == {"subgoal_slots": True, "plan_choices": True}
    assert warmstart_settings("h2r", planner="memory") == {"subgoal_slots": True,
                                                           "plan_choices": False}
    assert warmstart_settings("jerp") == {"subgoal_slots": False, "plan_choices": False}


def test_a_method_that_learns_nothing_evaluates_as_iteration_0():
    """Its later evaluations play iteration 0's job (and so reuse its cached episodes)."""
    from jerp.stages.evaluate import acting_iteration

    assert {m for m in METHODS if acting_iteration(m, 3) == 0} == {"react", "reflexion"}
    assert acting_iteration("jerp", 3) == 3 and acting_iteration("react", 0) == 0


@pytest.mark.parametrize("stage", ["references", "states", "warmstart"])
def test_a_shared_stage_reads_no_method_param(root, stage):
    """DVC shares these stages between methods only if they depend on no method param, and
    brings their outputs back from its run cache (jerp -> h2r -> jerp trains two warm
    starts, not three; policy_only after jerp plays no reference again) only if no output
    of them is `persist` (DVC's run cache skips such stages)."""
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    st = dvc["stages"][stage]
    method_keys = ("run.method", "rules.planner", "rules.subgoal_slot")  # via prepare's files
    assert not [k for k in st["params"] if k in ("run", "rules", *method_keys)]
    assert "run.method" in dvc["stages"]["prepare"]["params"]
    if stage == "warmstart":
        assert "data/warmstart_settings.json" in st["deps"]
    outs = [o for o in st["outs"] + st.get("metrics", []) if isinstance(o, dict)]
    assert not [o for o in outs for spec in o.values() if spec.get("persist")]


def test_params_of_the_baselines():
    p = parse_params({"run": {"method": "reflexion"}, "reflexion": {"trials": 2},
                      "expel": {"examples": 2}})
    assert (p.run.method, p.reflexion.trials, p.reflexion.reflector) == (
        "reflexion", 2, "milestones")
    assert parse_params({}).reflexion.trials == 3 and parse_params({}).expel.examples == 1
    with pytest.raises(ParamsError, match=r"reflexion\.trials' = 0"):
        parse_params({"reflexion": {"trials": 0}})
    with pytest.raises(ParamsError) as e:
        parse_params({"reflexion": {"reflector": "gpt"}})
    assert "reflexion.reflector" in str(e.value) and "'milestones'" in str(e.value)
    with pytest.raises(ParamsError, match=r"expel\.examples' = -1"):
        parse_params({"expel": {"examples": -1}})
    with pytest.raises(ParamsError, match=r"unknown key 'expel\.top_k'"):
        parse_params({"expel": {"top_k": 1}})
    with pytest.raises(ParamsError) as e:
        parse_params({"run": {"method": "expl"}})
    assert "'expl'" in str(e.value) and "'expel'" in str(e.value)


# ---------------------------------------------------------------- the evaluate stage


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory, model_cache, alf_root):
    """One real ALFWorld type, one train and one eval game, the base model, 3 steps."""
    from jerp.stages import prepare, references, warmstart

    d = tmp_path_factory.mktemp("baselines")
    p = _stage_params("react", model_cache, alf_root)
    prepare.run(p, d)
    references.run(p, d)
    warmstart.run(p, d)  # games_per_type 0: iteration 0 is the base model
    return d


def _stage_params(method, model_cache, alf_root, **extra):
    return parse_params({
        "run": {"method": method},
        "env": {"data_dir": str(alf_root), "max_steps": 3, "train_per_type": 1, "eval_per_type": 1,
                "task_types": [HEAT]},
        "policy": {"cache_dir": str(model_cache), "batch_envs": 1, "history": 1},
        "warmstart": {"games_per_type": 0},
        "runner": {"kind": "local"},
        "reflexion": {"trials": 2},
        **extra,
    })


@pytest.mark.slow
def test_reflexion_evaluate_on_a_real_game(eval_dir, model_cache, alf_root):
    from jerp import paths
    from jerp.records import read_json, read_trajectories
    from jerp.stages import evaluate

    p = _stage_params("reflexion", model_cache, alf_root, eval={"expert_states": False})
    m = evaluate.run(p, eval_dir, 0)
    # A heat task needs at least 6 steps: at 3 every trial fails, so the game is retried once.
    first, second = read_trajectories(eval_dir / paths.eval_file(0))
    assert (first.trial, second.trial) == (0, 1) and first.task_id == second.task_id
    assert first.notes_shown == [] and second.notes_shown == [
        milestone_note(first, AX, p.reflexion.max_note_chars)]
    assert second.traj_id.endswith("/t1") and second.traj_id != first.traj_id
    assert m["episodes"] == 1 and m["trial_episodes"] == 2
    assert not second.won and m["success_at"] == {"1": 0.0, "2": 0.0}
    assert m["success"] == m["success_at"]["1"]  # success@1: the first attempt
    assert read_json(eval_dir / paths.metrics_file(0)) == m


@pytest.mark.slow
def test_expel_evaluate_shows_the_train_reference(eval_dir, model_cache, alf_root):
    from jerp import paths
    from jerp.records import read_trajectories
    from jerp.stages import evaluate

    p = _stage_params("expel", model_cache, alf_root)
    m = evaluate.run(p, eval_dir, 0)
    (t,) = read_trajectories(eval_dir / paths.eval_file(0))
    train_refs = [r.traj_id for r in read_trajectories(eval_dir / paths.references_file())
                  if r.split == "train" and r.won]
    assert len(train_refs) == 1 and t.examples_shown == train_refs
    assert t.trial == 0 and t.notes_shown == [] and "success_at" not in m
    assert m["expert_states"] > 0  # the reference states were ranked with the example shown


def test_a_later_evaluation_of_a_frozen_method_is_iteration_0s_job(tmp_path, monkeypatch):
    """evaluate@2 of react asks for exactly the episodes evaluate@0 asked for (same policy
    folder, pool, labels and progress name, so the same cached chunks), and says so in
    its metrics; a method that learns evaluates its own iteration."""
    from report_fixtures import game

    from jerp import paths
    from jerp.adapters import write_adapter
    from jerp.memory.pool import empty_pool
    from jerp.records import AdapterManifest, TaskList, read_json, write_snapshot, write_tasks
    from jerp.stages import evaluate

    task = {"task_id": "g", "env": "alfworld", "split": "eval_out", "task_type": HEAT,
            "source": "g"}
    write_tasks(tmp_path / paths.tasks_file(),
                TaskList(env="alfworld", seed=0, splits={"eval_out": [task]}))
    for i in (0, 2):
        write_snapshot(tmp_path / paths.rules_file(i), empty_pool(10))
        write_adapter(tmp_path / paths.adapter_dir(i), None,
                      AdapterManifest(kind="none", base="smollm2", iteration=i, stage="t"))
    asked = []

    def fake_play(p, root, agent, specs, meta, rules, desc, **kw):  # no model: the request
        asked.append((agent, meta, rules, desc, [s.task.task_id for s in specs]))
        return [game(s.task.task_id, HEAT, False, meta["iteration"]) for s in specs]

    monkeypatch.setattr(evaluate, "play_episodes", fake_play)
    for method in ("react", "jerp"):
        p = parse_params({"run": {"method": method}, "eval": {"expert_states": False}})
        m0, m2 = evaluate.run(p, tmp_path, 0), evaluate.run(p, tmp_path, 2)
        assert (m0["iteration"], m2["iteration"]) == (0, 2)
        if method == "react":
            assert asked[-1] == asked[-2] and asked[-1][3] == "evaluate@0"
            assert m2["acts_as_iteration"] == 0 and "acts_as_iteration" not in m0
        else:
            assert asked[-1][0].adapter == tmp_path / paths.adapter_dir(2)
            assert asked[-1][1]["iteration"] == 2 and "acts_as_iteration" not in m2
        assert read_json(tmp_path / paths.metrics_file(2)) == m2
