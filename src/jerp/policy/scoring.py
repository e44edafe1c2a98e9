"""Rank-mode action scoring: log p(command | prompt), summed over the command's tokens.

The prompt is encoded once and its KV cache is shared by every candidate
command (one batched forward over the candidates), instead of re-encoding the
prompt per candidate: the same numbers (see tests) for ~20x fewer tokens.
Each command is scored with a trailing newline, so a command that is a prefix
of a longer one is not favoured for stopping early.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

from jerp.policy.model import Policy

TERMINATOR = "\n"


def encode_candidates(tokenizer, candidates: Sequence[str]) -> list[list[int]]:
    return [
        tokenizer(" " + c + TERMINATOR, add_special_tokens=False)["input_ids"] for c in candidates
    ]


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def score_naive(policy: Policy, prompt_ids: list[int], cands: list[list[int]]) -> list[float]:
    """Reference implementation: the full prompt + command per candidate (tests, benchmark)."""
    out = []
    dev = policy.model.device
    for c in cands:
        ids = torch.tensor([prompt_ids + c], device=dev)
        logits = policy.model(input_ids=ids).logits[0]
        n = len(prompt_ids)
        lp = _token_logprobs(logits[n - 1 : n - 1 + len(c)], torch.tensor(c, device=dev))
        out.append(float(lp.sum()))
    return out


@torch.no_grad()
def score_shared_prefix(
    policy: Policy, prompt_ids: list[int], cands: list[list[int]]
) -> list[float]:
    """The prompt's KV cache, computed once, continued by all candidates in one batch."""
    model = policy.model
    dev = model.device
    pre = model(input_ids=torch.tensor([prompt_ids], device=dev), use_cache=True)
    first_lp = torch.log_softmax(pre.logits[0, -1].float(), dim=-1)
    n = len(cands)
    width = max(len(c) for c in cands)
    pad = policy.tokenizer.pad_token_id
    ids = torch.full((n, width), pad, dtype=torch.long, device=dev)
    mask = torch.zeros((n, width), dtype=torch.long, device=dev)
    for i, c in enumerate(cands):
        ids[i, : len(c)] = torch.tensor(c, device=dev)
        mask[i, : len(c)] = 1
    cache = pre.cache
    cache.batch_repeat_interleave(n)
    attn = torch.cat([torch.ones((n, len(prompt_ids)), dtype=torch.long, device=dev), mask],
                     dim=1)
    logits = model(input_ids=ids, attention_mask=attn, cache=cache).logits
    # Token j of a candidate is predicted by position j-1; token 0 by the prompt's last position.
    lp = _token_logprobs(logits[:, :-1], ids[:, 1:]) * mask[:, 1:]
    return (first_lp[[c[0] for c in cands]] + lp.sum(dim=1)).tolist()


SCORINGS = ("sum", "mean", "calibrated")


def candidate_values(scores: Sequence[float], lengths: Sequence[int], how: str,
                     unconditional: Sequence[float] | None = None) -> list[float]:
    """The score the candidate softmax uses (`policy.score`): the summed log-probability,
    its per-token mean, or "calibrated": summed minus the command's log-probability under
    an empty context (`unconditional`, policy/calibration.py)."""
    if how == "sum":
        return list(scores)
    if how == "mean":
        return [s / n for s, n in zip(scores, lengths, strict=True)]
    if how == "calibrated":
        if unconditional is None:
            raise ValueError("score 'calibrated' needs the commands' unconditional "
                             "log-probabilities (policy/calibration.py UnconditionalScores)")
        return [s - u for s, u in zip(scores, unconditional, strict=True)]
    raise ValueError(f"unknown candidate score {how!r}; accepted: {', '.join(SCORINGS)}")


def candidate_probs(
    scores: Sequence[float], lengths: Sequence[int], how: str, temperature: float,
    unconditional: Sequence[float] | None = None,
) -> list[float]:
    """pi(a|s) = softmax(value(a) / T) over the admissible commands; T = 0 is one-hot argmax.

    This is the acting policy that GRPO trains (policy/grpo.py recomputes it with grads).
    """
    vals = candidate_values(scores, lengths, how, unconditional)
    if temperature <= 0:
        best = max(range(len(vals)), key=vals.__getitem__)
        return [float(i == best) for i in range(len(vals))]
    top = max(vals)
    weights = [math.exp((v - top) / temperature) for v in vals]
    z = sum(weights)
    return [w / z for w in weights]


def choose(
    scores: Sequence[float], lengths: Sequence[int], how: str, temperature: float,
    rng: random.Random, unconditional: Sequence[float] | None = None,
) -> int:
    """Greedy (temperature 0) or a sample from the candidate softmax."""
    return pick(candidate_probs(scores, lengths, how, temperature, unconditional),
                temperature, rng)


def pick(probs: Sequence[float], temperature: float, rng: random.Random) -> int:
    """An action from `candidate_probs`' output: its one-hot argmax when greedy."""
    if temperature <= 0:
        return list(probs).index(1.0)
    return rng.choices(range(len(probs)), weights=probs)[0]


def best_untaken(values: Sequence[float], commands: Sequence[str], taken: set[str]) -> int:
    """The greedy choice among the commands not in `taken` (ties to the earlier, as `max`
    does); the plain greedy choice when every command is in `taken`.

    A greedy policy that sees an observation again takes the same command again, and a
    history window cannot show it that it did: `policy.avoid_repeats` passes the
    commands it already took at this observation as `taken`, so it tries the next one.
    """
    best = max(range(len(values)), key=values.__getitem__)
    fresh = [i for i, c in enumerate(commands) if c not in taken]
    return max(fresh, key=values.__getitem__) if fresh else best


def rank_of(values: Sequence[float], index: int) -> int:
    """1-based rank of candidate `index` under greedy choice: ties go to the earlier
    candidate, as `max` does, so rank 1 is exactly "greedy picks it"."""
    v = values[index]
    return 1 + sum(x > v or (x == v and j < index) for j, x in enumerate(values))
