"""Rejection-sampling fine-tuning (RFT) and the warm start: supervised learning of
successful actions as a classification over the admissible commands.

The target class is the reference (or winning) action among the candidates, so
the loss optimises "that action ranked first" under the same candidate softmax
the agent acts with, rather than next-token likelihood of free text.
"""

from __future__ import annotations

import torch

from jerp.records import Trajectory


def candidate_ce(logits: torch.Tensor, target: int) -> torch.Tensor:
    """-log softmax(logits)[target] over the candidate set."""
    return -torch.log_softmax(logits, dim=-1)[target]


def successes(trajs: list[Trajectory]) -> list[Trajectory]:
    """Episodes worth imitating: won, with their candidate lists recorded."""
    return [t for t in trajs if t.won and any(s.admissible for s in t.steps)]


def rotate(items: list, k: int, iteration: int) -> list:
    """The iteration's share of a fixed list, k at a time, wrapping around: over the
    iterations RFT revisits every reference instead of the same first k."""
    if not items or k <= 0:
        return []
    start = ((iteration - 1) * k) % len(items)
    return [items[(start + j) % len(items)] for j in range(min(k, len(items)))]
