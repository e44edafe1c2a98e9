"""GRPO over the candidate set (rank mode), as in the JERP paper, plus GiGPO step anchors.

The acting policy is the softmax over the admissible commands of value(a)/T, where
value is the command's summed (or per-token mean, or calibrated) log-probability
(scoring.py, calibration.py). So:

  * advantage: G episodes of one game form a group; an episode's advantage is its
    return minus the group mean (divided by the group std if `std_normalize`, the
    original GRPO; off by default as in Dr. GRPO), shared by all its decisions.
    A group with equal returns gives zero advantage: no gradient, and we say so.
  * GiGPO (arXiv 2505.10978), optional: steps of one game's group that share the
    observation and the admissible set are an anchor group; a step's discounted
    return (gamma) minus its anchor group's mean is added with weight `step_weight`.
  * objective per decision, PPO-style clipped ratio r = pi_theta(a|s) / pi_old(a|s):
        L = -min(r A, clip(r, 1 - eps, 1 + eps) A) - c_H H(pi_theta) + beta KL(pi_theta||pi_ref)
    with entropy and KL exact over the candidate set (a few dozen commands), the
    reference being the base model with the adapter disabled.

Why not TRL's GRPOTrainer: it recomputes advantages over fixed groups of generated
completions and has no hook for a loss over a candidate set, so rank mode needs
its own loop (policy/train.py); the numbers here are pure functions, tested by hand.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean, pstdev

import torch

EPS = 1e-8


def episode_advantages(returns: Sequence[float], groups: Sequence[str],
                       std_normalize: bool = False) -> list[float]:
    """Return minus the mean of its group (optionally over the group's std)."""
    by: dict[str, list[float]] = defaultdict(list)
    for r, g in zip(returns, groups, strict=True):
        by[g].append(r)
    out = []
    for r, g in zip(returns, groups, strict=True):
        a = r - mean(by[g])
        if std_normalize:
            a /= pstdev(by[g]) + EPS if len(by[g]) > 1 else 1.0
        out.append(0.0 if abs(a) < EPS else a)
    return out


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """G_t = r_t + gamma G_{t+1}: the return from each step on."""
    out, g = [0.0] * len(rewards), 0.0
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def step_advantages(anchors: Sequence[Sequence[str]], step_returns: Sequence[Sequence[float]],
                    ) -> list[list[float]]:
    """GiGPO: per episode and step, its discounted return minus the mean over the steps of
    the same anchor state (within one game's group); 0 where the anchor is unique."""
    by: dict[str, list[float]] = defaultdict(list)
    for keys, rets in zip(anchors, step_returns, strict=True):
        for k, g in zip(keys, rets, strict=True):
            by[k].append(g)
    return [[(g - mean(by[k])) if len(by[k]) > 1 else 0.0 for k, g in zip(keys, rets,
                                                                          strict=True)]
            for keys, rets in zip(anchors, step_returns, strict=True)]


def candidate_logits(scores: torch.Tensor, lengths: Sequence[int], how: str,
                     temperature: float, unconditional: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """value(a)/T for every candidate: the logits of the acting softmax (scoring.py's
    `candidate_values`; "calibrated" subtracts `unconditional`, recomputed with the
    current weights by the caller: see policy/calibration.py for why)."""
    if how == "sum":
        vals = scores
    elif how == "mean":
        vals = scores / torch.tensor(lengths, dtype=scores.dtype, device=scores.device)
    elif how == "calibrated":
        if unconditional is None:
            raise ValueError("score 'calibrated' needs the commands' unconditional "
                             "log-probabilities (policy/calibration.py decision_offsets)")
        vals = scores - unconditional
    else:
        raise ValueError(f"unknown candidate score {how!r}; accepted: sum, mean, calibrated")
    return vals / max(temperature, EPS)


@dataclass
class GRPOTerms:
    loss: torch.Tensor
    ratio: float
    clipped: bool
    entropy: float
    kl: float


def clipped_surrogate(logp: torch.Tensor, old_logp: float, advantage: float, clip: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """-min(r A, clip(r) A) with r = exp(logp - old_logp); returns (loss, ratio)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantage
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantage
    return -torch.min(unclipped, clipped), ratio


def grpo_decision_loss(
    logits: torch.Tensor, chosen: int, advantage: float, old_prob: float, clip: float,
    entropy_coef: float = 0.0, ref_logits: torch.Tensor | None = None, kl_coef: float = 0.0,
) -> GRPOTerms:
    """The clipped candidate-softmax objective of one decision (to be averaged)."""
    logp = torch.log_softmax(logits, dim=-1)
    loss, ratio = clipped_surrogate(logp[chosen], math.log(max(old_prob, EPS)), advantage, clip)
    p = logp.exp()
    entropy = -(p * logp).sum()
    loss = loss - entropy_coef * entropy
    kl = torch.zeros((), device=logits.device)
    if ref_logits is not None and kl_coef > 0:
        kl = (p * (logp - torch.log_softmax(ref_logits, dim=-1))).sum()
        loss = loss + kl_coef * kl
    r = float(ratio.detach())
    return GRPOTerms(loss, r, abs(r - 1) > clip, float(entropy.detach()), float(kl.detach()))

