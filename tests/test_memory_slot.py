"""The per-step memory slot: rendered after the header, a changed slot keeps the
header's KV cache and scores exactly like the prompt encoded from scratch, and
rollouts record each step's subgoal and memories (real model, real ALFWorld)."""

from __future__ import annotations

import pytest
import walkthroughs
from slot_fixtures import PLAN, ScriptedStepMemory

from jerp.config import EnvParams, PolicyParams
from jerp.envs.alfworld import list_tasks
from jerp.envs.registry import env_factory
from jerp.memory.base import MemorySlot, render_slot
from jerp.policy.agent import Agent
from jerp.policy.kvcache import PrefixCache, common_prefix
from jerp.policy.prompts import (
    EpisodeContext,
    build_prompt,
    header,
    prompt_pieces,
)
from jerp.policy.rollout import EpisodeSpec, play
from jerp.policy.scoring import encode_candidates, score_shared_prefix
from jerp.records import RuleShown, StepRecord, Trajectory

STEPS = 7
# history 2: the window slides at steps 4 and 6; the slot changes at steps 3 and 5.
SLOTS = {0: render_slot("find the mug", ["Mugs are often on the countertop."]),
         3: render_slot("cool the mug", ["Open the fridge before you put things in it.",
                                         "Take the mug before going to the fridge."]),
         5: render_slot("put the mug away", [])}


def test_render_slot_hand_written():
    assert render_slot("", []) == ""
    assert render_slot("find a mug", []) == "Current subgoal: find a mug\n"
    assert render_slot("cool it", ["Open the fridge.", "Close it after."]) == (
        "Current subgoal: cool it\nUseful experience:\n- Open the fridge.\n- Close it after.\n")
    assert render_slot("", ["Look around."]) == "Useful experience:\n- Look around.\n"


def test_prompt_without_slot_is_unchanged():
    """No slot: the exact text the template gave before the slot existed."""
    ctx = EpisodeContext(env="alfworld", goal="g", rules=["R."], initial="room",
                         history=[("o0", "look")])
    assert prompt_pieces(ctx, "o1", 3) == [
        "You are a household robot in a text world. Each turn you give one command.\nroom\n"
        "Rules learned from experience:\n- R.\n",
        "Observation: o0\n>", " look\n", "Observation: o1\n>"]


def test_slot_is_its_own_piece_after_the_header():
    ctx = EpisodeContext(env="alfworld", goal="g", initial="room", history=[("o0", "look")],
                         slot=render_slot("find a mug", ["Check the countertop."]))
    pieces = prompt_pieces(ctx, "o1", 3)
    assert pieces[0] == header(ctx) and pieces[1] == ctx.slot
    assert pieces[2:] == ["Observation: o0\n>", " look\n", "Observation: o1\n>"]
    assert build_prompt(ctx, "o1", 3) == "".join(pieces)
    assert build_prompt(ctx, "o1", 0, ["look"]).endswith(
        "Check the countertop.\nObservation: o1\nValid commands: look\n>")


@pytest.fixture(scope="module")
def walkthrough(alf_root):
    """Real ALFWorld states along a valid_unseen walkthrough of at least STEPS steps."""
    return walkthroughs.walkthrough_states(alf_root, STEPS)


def test_changed_slot_scores_like_the_prompt_encoded_from_scratch(policy_fp32, walkthrough):
    """(a) Along a real walkthrough with history 2 and the slot changing twice, every
    step's cached scores equal those of the whole prompt encoded from scratch; the
    cache is rebuilt once per window slide and once per slot change."""
    agent = Agent(policy_fp32, PolicyParams(history=2))
    ob0 = walkthrough[0][0]
    ctx = EpisodeContext(env="alfworld", goal=ob0.goal, rules=["Look before you leap."],
                         initial=ob0.text)
    tok = policy_fp32.tokenizer
    for t, (ob, action) in enumerate(walkthrough):
        ctx.slot = SLOTS.get(t, ctx.slot)
        got, _ = agent.scores(ctx, ob)
        text = build_prompt(ctx, ob.text, 2)
        assert ctx.slot in text
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert agent.prompt_ids(ctx, ob.text) == ids  # pieces tokenize like the text
        ref = score_shared_prefix(policy_fp32, ids, encode_candidates(tok, ob.admissible))
        assert got == pytest.approx(ref, abs=1e-4)
        ctx.history.append((ob.text, action))
    assert ctx.state.cache.rebuilds == 4  # window slides at 4 and 6, slot changes at 3 and 5


def test_slot_change_forwards_only_from_the_slot_on(policy_fp32, walkthrough):
    """(b) Changing the slot keeps every header token cached: what is forwarded is
    exactly the new prompt's tail after its common prefix with the old one, and that
    prefix covers the whole header."""
    agent = Agent(policy_fp32, PolicyParams(history=2))
    tok = policy_fp32.tokenizer
    (ob0, a0), (ob1, _) = walkthrough[:2]
    ctx = EpisodeContext(env="alfworld", goal=ob0.goal, rules=["Look before you leap."],
                         initial=ob0.text, slot=SLOTS[0], history=[(ob0.text, a0)])
    head = tok(header(ctx), add_special_tokens=False)["input_ids"]
    pc = PrefixCache()
    old = agent.prompt_ids(ctx, ob1.text)
    pc.extend(policy_fp32, old)
    ctx.slot = SLOTS[3]
    new = agent.prompt_ids(ctx, ob1.text)
    slot_ids = tok(SLOTS[3], add_special_tokens=False)["input_ids"]
    assert new[: len(head)] == head and new[len(head) : len(head) + len(slot_ids)] == slot_ids
    keep = common_prefix(old, new)
    assert len(head) <= keep < len(head) + len(slot_ids)  # the slot's text differs early
    before = pc.encoded
    pc.extend(policy_fp32, new)
    assert pc.encoded - before == len(new) - keep
    assert pc.encoded - before <= len(new) - len(head)
    assert pc.rebuilds == 1 and pc.cache.get_seq_length() == len(new)
    fresh = PrefixCache()
    fresh.extend(policy_fp32, new)
    assert pc.next_logprobs.tolist() == pytest.approx(fresh.next_logprobs.tolist(), abs=1e-4)


def test_episode_records_subgoals_and_memories(policy_fp32, alf_root):
    """(c) One real greedy ALFWorld episode with the scripted fixture memory switching
    subgoal every 2 actions: each step records the subgoal and memory ids it showed,
    the trajectory the subgoal sequence, and each step's logprob is the chosen
    command's score under the prompt with that step's slot, rebuilt from scratch."""
    task = list_tasks(alf_root, "eval_out")[0]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    agent = Agent(policy_fp32, PolicyParams(history=2))
    memory = ScriptedStepMemory(per_subgoal=2)
    (traj,) = play([EpisodeSpec(task)], make_env, agent, 5, 1, {}, env_workers=0,
                   step_memory=memory)
    assert traj.n_steps == 5
    find, take, place = (s for s, _ in PLAN)
    assert [s.subgoal for s in traj.steps] == [find, find, take, take, place]
    assert [s.memories for s in traj.steps] == [["m1"], ["m1"], ["m2", "m3"], ["m2", "m3"],
                                                ["m4"]]
    assert traj.subgoals == [find, take, place]
    # The slot reached the prompt: rebuild each step's prompt with its slot and score it.
    tok = policy_fp32.tokenizer
    texts = {i: t for _, mems in PLAN for i, t in mems}
    ctx = EpisodeContext(env="alfworld", goal=traj.goal, initial=traj.initial_observation)
    for s in traj.steps:
        ctx.slot = render_slot(s.subgoal, [texts[i] for i in s.memories])
        ids = tok(build_prompt(ctx, s.observation, 2), add_special_tokens=False)["input_ids"]
        scores = score_shared_prefix(policy_fp32, ids, encode_candidates(tok, s.admissible))
        assert s.logprob == pytest.approx(scores[s.admissible.index(s.action)], abs=1e-4)
        ctx.history.append((s.observation, s.action))
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert again.subgoals == traj.subgoals and again.steps[2].memories == ["m2", "m3"]


def test_an_episode_shows_the_places_it_has_been(policy_fp32, alf_root):
    """policy.visited on the real engine and model: each step's recorded slot is the
    places its earlier `go to` commands reached, rebuilt from the actions alone; the
    memory pickles (chunks carry it to worker processes and into their cache key)."""
    import pickle

    from jerp.memory.visited import VisitedMemory, visited_places

    task = list_tasks(alf_root, "eval_out")[1]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    # per-token mean scores: the base model's summed choice is `look` everywhere
    agent = Agent(policy_fp32, PolicyParams(history=2, score="mean"))
    memory = pickle.loads(pickle.dumps(VisitedMemory()))
    (traj,) = play([EpisodeSpec(task)], make_env, agent, 6, 1, {}, env_workers=0,
                   step_memory=memory)
    actions = [s.action for s in traj.steps]
    assert any(a.startswith("go to ") for a in actions[:-1]), actions
    for t, s in enumerate(traj.steps):
        assert s.slot == render_slot("", [], visited_places(actions[:t]))
    assert traj.steps[0].slot == "" and traj.subgoals == []


def test_visited_places_are_the_go_to_targets_once_each():
    from jerp.memory.visited import visited_places

    assert visited_places(["go to desk 1", "open drawer 1", "go to bed 1", "go to desk 1",
                           "take pen 1 from desk 1"]) == ("desk 1", "bed 1")
    assert visited_places(["look", "inventory"]) == ()
    assert render_slot("", [], ("desk 1", "bed 1")) == "Places visited: desk 1, bed 1\n"
    assert render_slot("find a pen", [], ("desk 1",)) == (
        "Current subgoal: find a pen\nPlaces visited: desk 1\n")


def test_subgoal_sequence_and_bad_step_memory(policy_fp32, alf_root):
    """A subgoal that comes back after another counts again; "" is no subgoal; a
    step memory that returns something else than a MemorySlot is named in the error."""
    seq = ["a", "a", "", "a", "b"]

    def memory(task, goal, steps: list[StepRecord], plan=None) -> MemorySlot:
        return MemorySlot(seq[len(steps)], [RuleShown(id=f"x{len(steps)}", text="Be brief.")])

    task = list_tasks(alf_root, "eval_out")[0]
    make_env = env_factory(EnvParams(max_steps=50), alf_root)
    agent = Agent(policy_fp32, PolicyParams(history=0))
    (traj,) = play([EpisodeSpec(task)], make_env, agent, 5, 1, {}, env_workers=0,
                   step_memory=memory)
    assert [s.subgoal for s in traj.steps] == seq
    assert traj.subgoals == ["a", "a", "b"]
    assert traj.steps[4].memories == ["x4"]
    with pytest.raises(TypeError, match="MemorySlot, got dict"):
        play([EpisodeSpec(task)], make_env, agent, 2, 1, {}, env_workers=0,
             step_memory=lambda task, goal, steps, plan: {"subgoal": "a"})


def test_records_without_slot_fields_still_load():
    old = ('{"traj_id": "t", "task_id": "x", "env": "alfworld", "split": "train", '
           '"task_type": "pick", "goal": "g", "steps": [{"observation": "o", '
           '"admissible_count": 1, "action": "look"}], "reward": 0, "won": false, '
           '"n_steps": 1}')
    t = Trajectory.model_validate_json(old)
    assert t.subgoals == [] and t.steps[0].subgoal is None and t.steps[0].memories == []
