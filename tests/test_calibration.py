"""Calibrated scores: hand-computed values, the empty context, one forward per new command,
and training offsets equal to the acting ones (with gradients)."""

from __future__ import annotations

import random

import pytest
import torch

from jerp.config import LoraParams, PolicyParams
from jerp.envs.base import Observation
from jerp.policy.agent import Agent
from jerp.policy.calibration import (
    UnconditionalScores,
    command_logprobs,
    decision_offsets,
    premise_ids,
    premise_text,
)
from jerp.policy.grpo import candidate_logits
from jerp.policy.packing import PackedDecision, Target
from jerp.policy.prompts import EpisodeContext
from jerp.policy.scoring import (
    candidate_probs,
    candidate_values,
    choose,
    encode_candidates,
    rank_of,
    score_naive,
)

CANDS = ["go to sinkbasin 1", "look", "inventory", "go to sinkbasin 2", "look"]


def test_calibrated_values_by_hand():
    # summed -5, -3; unconditional -4, -1: calibrated -1, -2, so the order flips.
    assert candidate_values([-5.0, -3.0], [5, 1], "calibrated", [-4.0, -1.0]) == [-1.0, -2.0]
    assert choose([-5.0, -3.0], [5, 1], "sum", 0.0, random.Random(0)) == 1
    assert choose([-5.0, -3.0], [5, 1], "calibrated", 0.0, random.Random(0), [-4.0, -1.0]) == 0
    # T = 1: softmax(-1, -2) = (e / (e + 1), 1 / (e + 1))
    p = candidate_probs([-5.0, -3.0], [5, 1], "calibrated", 1.0, [-4.0, -1.0])
    assert p[0] == pytest.approx(2.718281828 / 3.718281828)
    logits = candidate_logits(torch.tensor([-5.0, -3.0]), [5, 1], "calibrated", 2.0,
                              torch.tensor([-4.0, -1.0]))
    assert logits.tolist() == [-0.5, -1.0]


def test_calibrated_without_offsets_or_unknown_scoring_is_an_error():
    with pytest.raises(ValueError, match="unconditional"):
        candidate_values([-1.0], [1], "calibrated")
    with pytest.raises(ValueError, match="unconditional"):
        candidate_logits(torch.tensor([-1.0]), [1], "calibrated", 1.0)
    with pytest.raises(ValueError, match="'median'.*sum, mean, calibrated"):
        candidate_values([-1.0], [1], "median")
    with pytest.raises(ValueError, match="'median'.*sum, mean, calibrated"):
        candidate_logits(torch.tensor([-1.0]), [1], "median", 1.0)


def test_empty_context_is_the_action_marker():
    assert premise_text("alfworld") == ">" and premise_text("webshop") == ">"


def test_unconditional_scores_equal_naive_and_run_once_per_new_command(policy_fp32):
    tok = policy_fp32.tokenizer
    premise = premise_ids(tok, "alfworld")
    naive = score_naive(policy_fp32, premise, encode_candidates(tok, CANDS))
    u = UnconditionalScores(policy_fp32)
    got = u("alfworld", CANDS)
    assert got == pytest.approx(naive, abs=1e-4)
    assert u.forwards == 1 and len(u.memo) == 4  # "look" twice: scored once
    assert u("alfworld", ["inventory", "look"]) == [got[2], got[1]]
    assert u.forwards == 1  # nothing new: no forward
    u("alfworld", ["look", "open fridge 1"])
    assert u.forwards == 2 and len(u.memo) == 5


def test_agent_ranks_by_calibrated_scores(policy_fp32):
    ctx = EpisodeContext(env="alfworld", goal="put a clean mug in coffeemachine.")
    ob = Observation("You are in the kitchen. You see a mug 1 and a sinkbasin 1.",
                     CANDS[:4], ctx.goal, "pick_clean_then_place_in_recep")
    cal = Agent(policy_fp32, PolicyParams(history=0, score="calibrated"))
    plain = Agent(policy_fp32, PolicyParams(history=0))
    scores, _ = plain.scores(ctx, ob)
    u = UnconditionalScores(policy_fp32)("alfworld", ob.admissible)
    want = [s - x for s, x in zip(scores, u, strict=True)]
    assert cal.values(EpisodeContext(env="alfworld", goal=ctx.goal), ob) == pytest.approx(
        want, abs=1e-4)
    for i, a in enumerate(ob.admissible):
        assert cal.expert_rank(EpisodeContext(env="alfworld", goal=ctx.goal), ob, a) \
            == rank_of(want, i)


def test_training_offsets_match_acting_and_carry_gradients(model_cache):
    from jerp.policy.model import load_policy

    policy = load_policy("smollm2", model_cache, "float32", trainable=True, lora=LoraParams())
    tok = policy.tokenizer
    cands = encode_candidates(tok, CANDS[:4])
    d1 = PackedDecision(0, [c[0] for c in cands], [], [c[1:] for c in cands],
                        [len(c) for c in cands], 0, Target(ce=True), 0)
    d2 = PackedDecision(0, [cands[1][0]], [], [cands[1][1:]], [len(cands[1])], 0,
                        Target(ce=True), 1)
    premise = premise_ids(tok, "alfworld")
    off = decision_offsets(policy.model, policy.dtype, premise, [d1, d2])
    acting = UnconditionalScores(policy)("alfworld", CANDS[:4])
    assert off[0].tolist() == pytest.approx(acting, abs=1e-4)
    assert off[1].tolist() == pytest.approx([acting[1]], abs=1e-4)
    assert off[0].requires_grad
    off[0].sum().backward()
    grads = [p.grad for n, p in policy.model.named_parameters() if "lora_B" in n]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    with torch.no_grad():
        direct = command_logprobs(policy.model, policy.dtype, premise, cands)
    assert direct.tolist() == pytest.approx(acting, abs=1e-4)
