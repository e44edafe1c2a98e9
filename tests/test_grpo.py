"""GRPO over the candidate set, RFT's candidate cross-entropy: hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from jerp.policy.experience import grpo_items, milestone_progress, rollout_diversity
from jerp.policy.grpo import (
    candidate_logits,
    discounted_returns,
    episode_advantages,
    grpo_decision_loss,
    step_advantages,
)
from jerp.policy.rft import candidate_ce, rotate
from jerp.records import StepRecord, Trajectory


def test_episode_advantage_is_return_minus_group_mean():
    adv = episode_advantages([1, 0, 0, 1, 0.5, 0.5], ["a", "a", "a", "a", "b", "b"])
    assert adv == [0.5, -0.5, -0.5, 0.5, 0.0, 0.0]
    std = episode_advantages([1, 0, 0, 1], ["a"] * 4, std_normalize=True)
    assert std == pytest.approx([1, -1, -1, 1], abs=1e-6)
    assert episode_advantages([0, 0, 0], ["g"] * 3, std_normalize=True) == [0.0, 0.0, 0.0]


def test_discounted_returns_and_gigpo_anchor_groups():
    assert discounted_returns([0, 0, 1], 0.5) == [0.25, 0.5, 1.0]
    # Two episodes pass the same anchor state "s" at different distances from success.
    adv = step_advantages([["s", "x"], ["s", "y"]], [[0.5, 1.0], [0.25, 0.0]])
    assert adv == [[0.125, 0.0], [-0.125, 0.0]]


def test_clipped_objective_by_hand():
    logits = torch.tensor([0.0, math.log(2.0)], requires_grad=True)  # pi = [1/3, 2/3]
    # ratio (2/3)/0.5 = 4/3 > 1 + eps: a positive advantage is clipped, no gradient.
    g = grpo_decision_loss(logits, 1, advantage=1.0, old_prob=0.5, clip=0.2)
    assert g.ratio == pytest.approx(4 / 3) and g.clipped
    assert float(g.loss.detach()) == pytest.approx(-1.2)
    g.loss.backward()
    assert torch.all(logits.grad == 0)
    # A negative advantage takes the unclipped (pessimistic) branch: -(4/3)(-1).
    logits.grad = None
    g = grpo_decision_loss(logits, 1, advantage=-1.0, old_prob=0.5, clip=0.2)
    assert float(g.loss.detach()) == pytest.approx(4 / 3)
    g.loss.backward()
    # d/dz_1 of ratio = ratio * (1 - pi_1): A * r * (1 - pi) = -(4/3)(1/3) -> loss grad +4/9
    assert logits.grad.tolist() == pytest.approx([-4 / 9, 4 / 9], abs=1e-6)


def test_entropy_and_kl_are_exact_over_the_candidates():
    logits = torch.tensor([0.0, math.log(2.0)])
    g = grpo_decision_loss(logits, 0, advantage=0.0, old_prob=1 / 3, clip=0.2,
                           entropy_coef=0.1, ref_logits=torch.zeros(2), kl_coef=0.5)
    h = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    kl = 1 / 3 * math.log((1 / 3) / 0.5) + 2 / 3 * math.log((2 / 3) / 0.5)
    assert g.entropy == pytest.approx(h, abs=1e-6) and g.kl == pytest.approx(kl, abs=1e-6)
    assert float(g.loss) == pytest.approx(-0.1 * h + 0.5 * kl, abs=1e-6)


def test_candidate_logits_temperature_and_mean():
    s = torch.tensor([-2.0, -6.0])
    assert candidate_logits(s, [1, 3], "sum", 2.0).tolist() == [-1.0, -3.0]
    assert candidate_logits(s, [1, 3], "mean", 1.0).tolist() == [-2.0, -2.0]


def test_candidate_cross_entropy_by_hand():
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0]))
    assert float(candidate_ce(logits, 0)) == pytest.approx(math.log(6))
    assert float(candidate_ce(logits, 2)) == pytest.approx(math.log(2))


def _traj(tid: str, ep: int, won: bool, actions: list[str]) -> Trajectory:
    steps = [StepRecord(observation=f"o{k}", admissible_count=2, action=a,
                        admissible=["look", a] if a != "look" else ["look", "inventory"],
                        prob=0.5, temperature=1.0) for k, a in enumerate(actions)]
    return Trajectory(traj_id=f"{tid}#{ep}", task_id=tid, env="alfworld", split="train",
                      task_type="t", goal="put some apple in fridge.", steps=steps,
                      reward=float(won), won=won, n_steps=len(steps), episode=ep)


def test_all_equal_group_gives_no_gradient_and_is_reported():
    rollouts = [_traj("g1", 0, False, ["look", "look"]), _traj("g1", 1, False, ["look", "look"]),
                _traj("g2", 0, True, ["take apple 1 from table 1"]),
                _traj("g2", 1, False, ["look"])]
    data = grpo_items(rollouts, {})
    assert [it.traj.task_id for it in data.items] == ["g2", "g2"]
    assert [t.advantage for it in data.items for t in it.targets.values()] == [0.5, -0.5]
    s = data.summary()
    assert s["zero_advantage_group_share"] == 0.5 and s["identical_group_share"] == 0.5
    assert s["zero_advantage_step_share"] == pytest.approx(4 / 6, abs=1e-4)
    div = rollout_diversity(rollouts)
    assert div["identical_group_share"] == 0.5 and div["distinct_actions_per_episode"] == 1.0


def test_progress_reward_counts_reference_milestones():
    ref = ["go to table 1", "take apple 1 from table 1", "go to fridge 1",
           "cool apple 1 with fridge 1", "move apple 1 to fridge 1"]
    goal = "cool some apple and put it in fridge."
    assert milestone_progress(ref, ref, goal) == 1.0
    assert milestone_progress(["take apple 2 from countertop 1"], ref, goal) == pytest.approx(1 / 3)
    assert milestone_progress(["look"], ref, goal) == 0.0


def test_rotate_walks_through_the_list():
    assert rotate([1, 2, 3, 4, 5], 2, 1) == [1, 2]
    assert rotate([1, 2, 3, 4, 5], 2, 3) == [5, 1]
    assert rotate([], 2, 1) == [] and rotate([1], 0, 1) == []
