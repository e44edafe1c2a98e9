"""Rank-mode scoring on the real SmolLM2 model."""

import random

import pytest

from jerp.config import PolicyParams
from jerp.envs.base import Observation
from jerp.policy.agent import Agent, parse_generated
from jerp.policy.prompts import EpisodeContext
from jerp.policy.scoring import (
    best_untaken,
    choose,
    encode_candidates,
    score_naive,
    score_shared_prefix,
)

PROMPT = (
    "You are a household robot in a text world. Each turn you give one command.\n"
    "Your task is to: put a clean mug in coffeemachine.\n"
    "Observation: You are in the kitchen. You see a mug 1 and a sinkbasin 1.\n>"
)
CANDS = ["go to sinkbasin 1", "take mug 1 from countertop 1", "look", "inventory",
         "clean mug 1 with sinkbasin 1"]


# One state with an obvious command, for the agent's decisions.
FRIDGE = Observation(
    text="You are in front of fridge 1. It is closed. Type: open fridge 1",
    admissible=["open fridge 1", "go to countertop 3", "examine stoveburner 2",
                "take potato 2 from countertop 1"],
    goal="open the fridge.", task_type="pick_cool_then_place_in_recep")


def _fridge_context(history: list[tuple[str, str]] | None = None) -> EpisodeContext:
    return EpisodeContext(env="alfworld", goal=FRIDGE.goal, history=list(history or []),
                          rules=["To open the fridge, the command is: open fridge 1"])


def test_shared_prefix_equals_naive_fp32(policy_fp32):
    tok = policy_fp32.tokenizer
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    cands = encode_candidates(tok, CANDS)
    naive = score_naive(policy_fp32, ids, cands)
    shared = score_shared_prefix(policy_fp32, ids, cands)
    assert shared == pytest.approx(naive, abs=1e-4)


def test_shared_prefix_bf16_close_to_fp32(policy_fp32, policy_bf16):
    """bf16 keeps 8 mantissa bits (~0.4% per value); over ~10-token sums the measured
    gap is a few tenths of a nat, so 0.75 nats is a tolerance that still catches a
    misaligned token (which moves a score by several nats)."""
    tok = policy_fp32.tokenizer
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    cands = encode_candidates(tok, CANDS)
    ref = score_naive(policy_fp32, ids, cands)
    got = score_shared_prefix(policy_bf16, ids, cands)
    assert got == pytest.approx(ref, abs=0.75)


def test_rank_mode_picks_the_obvious_command(policy_fp32):
    agent = Agent(policy_fp32, PolicyParams(history=0), seed=0)
    ob = FRIDGE
    d = agent.decide([_fridge_context()], [ob])[0]
    assert d.action == "open fridge 1" and d.valid and d.logprob < 0


def test_avoid_repeats_takes_the_next_command_at_a_seen_observation(policy_fp32):
    """policy.avoid_repeats: at an observation where the episode already took the greedy
    command, the agent takes the best-valued command it has not taken there; at a new
    observation, or without the param, it is the plain greedy choice."""
    ob = FRIDGE
    ctx_seen = _fridge_context(history=[(ob.text, "open fridge 1"), ("Nothing happens.", "look")])
    plain = Agent(policy_fp32, PolicyParams(history=0), seed=0)
    avoid = Agent(policy_fp32, PolicyParams(history=0, avoid_repeats=True), seed=0)
    assert plain.decide([ctx_seen], [ob])[0].action == "open fridge 1"
    values = plain.values(ctx_seen, ob)
    runner_up = max(range(1, 4), key=values.__getitem__)
    d = avoid.decide([ctx_seen], [ob])[0]
    assert d.action == ob.admissible[runner_up] and d.prob == 1.0
    elsewhere = [("You are in the kitchen.", "open fridge 1")]
    ctx_new = _fridge_context(history=elsewhere)
    assert avoid.decide([ctx_new], [ob])[0].action == "open fridge 1"


def test_best_untaken():
    cmds = ["a", "b", "c"]
    assert best_untaken([0.0, 2.0, 1.0], cmds, set()) == 1
    assert best_untaken([0.0, 2.0, 1.0], cmds, {"b"}) == 2
    assert best_untaken([0.0, 2.0, 2.0], cmds, {"a"}) == 1  # ties: the earlier
    assert best_untaken([0.0, 2.0, 1.0], cmds, {"a", "b", "c"}) == 1  # all tried: greedy


def test_choose_greedy_and_mean_and_sampling():
    assert choose([-5.0, -3.0], [5, 1], "sum", 0.0, random.Random(0)) == 1
    assert choose([-5.0, -3.0], [10, 1], "mean", 0.0, random.Random(0)) == 0
    picks = {choose([-1.0, -1.1], [1, 1], "sum", 1.0, random.Random(s)) for s in range(20)}
    assert picks == {0, 1}


def test_parse_generated():
    adm = ["go to desk 1", "look"]
    assert parse_generated("> Go to desk 1\nmore", adm) == ("go to desk 1", True)
    assert parse_generated("Action: look", adm) == ("look", True)
    assert parse_generated("think: find the key first", adm)[1] is True
    assert parse_generated("I will fly away", adm) == ("I will fly away", False)


def test_parse_generated_webshop_free_search():
    """WebShop accepts any non-empty search, on any page; ALFWorld has no such command."""
    item_page = ["click[back to search]", "click[< prev]", "click[black]", "click[buy now]"]
    assert parse_generated("> Search[ red running shoes ]\n", item_page) == (
        "search[red running shoes]", True)
    assert parse_generated("Action: click[Black]", item_page) == ("click[black]", True)
    assert parse_generated("search[]", item_page) == ("search[]", False)
    assert parse_generated("search[  ]", item_page) == ("search[  ]", False)
    assert parse_generated("click[red shoes]", item_page) == ("click[red shoes]", False)
    search_page = ["search[women's shorts]", "search[find me women's shorts]"]
    assert parse_generated("search[shorts, high waist]", search_page) == (
        "search[shorts, high waist]", True)
    alfworld = ["go to desk 1", "look"]
    assert parse_generated("search[desk]", alfworld) == ("search[desk]", False)
    assert parse_generated("search[desk]", []) == ("search[desk]", False)
