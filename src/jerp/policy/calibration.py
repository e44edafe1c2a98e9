"""Calibrated candidate scores: log p(a | prompt) - log p(a | empty context).

A command's summed log-probability mixes two things: how well it fits the
state, and how likely its words are anyway (short, frequent commands such as
`look` win everywhere for an untrained model). Subtracting the command's
log-probability under an empty context keeps the first part only: the
pointwise mutual information between command and prompt, as in "surface form
competition" (Holtzman et al., 2021, domain-conditional PMI), whose domain
premise is the answer slot alone.

Here the empty context is the prompt's action marker alone (">", the last line
of the environment's step template): no goal, no rules, no observation, the
command at the position where the agent writes it. A truly empty sequence has
no position to predict a command's first token from.

The offset u(a) depends on the command and the weights only, so:
  * acting (`UnconditionalScores`): computed once per distinct command string per
    policy (one batched trie forward for the commands a decision brings that
    were not seen yet), then reused by every later decision;
  * training (policy/train.py, `decision_offsets`): RECOMPUTED with gradients for
    each packed window. The weights move during the update, and so does u(a); a
    detached offset would make the update the summed score's gradient, which can
    raise the reference command's unconditional log-probability as much as its
    conditional one, a gain the acting policy then subtracts away. The extra
    forward holds the premise and each distinct command of the window once (a
    trie smaller than one decision's), a small cost beside the window itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jerp.policy.kvcache import build_trie
from jerp.policy.model import Policy
from jerp.policy.packing import PackedDecision, PackedWindow, Target, window_scores
from jerp.policy.prompts import observation_piece
from jerp.policy.scoring import encode_candidates


def premise_text(env: str) -> str:
    """The empty context of `env`'s prompts: the action marker, the step template's last
    line with no commands listed (">")."""
    return observation_piece(env, "").rsplit("\n", 1)[-1]


def premise_ids(tokenizer, env: str) -> list[int]:
    ids = tokenizer(premise_text(env), add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"env {env!r}: the prompt template's action marker tokenizes to nothing")
    return ids


def command_logprobs(model, dtype: torch.dtype, premise: list[int],
                     cands: Sequence[Sequence[int]]) -> torch.Tensor:
    """Summed log p(command | premise) for each command: one forward over the premise
    and the commands' trie (differentiable; wrap in no_grad to act)."""
    w = PackedWindow()
    anchor = w.extend(premise, -1)
    trie = build_trie(cands)
    base = len(w.tokens)
    for tok, par in zip(trie.tokens, trie.parents, strict=True):
        w.add(tok, anchor if par < 0 else base + par)
    w.decisions.append(PackedDecision(
        anchor=anchor, first=[c[0] for c in cands],
        nodes=[[base + n for n in path] for path in trie.paths],
        rest=[list(c[1:]) for c in cands], lengths=[len(c) for c in cands],
        chosen=0, target=Target(), step=0))  # scoring only: nothing is trained towards
    return window_scores(model, w, dtype)[0]


def decision_offsets(model, dtype: torch.dtype, premise: list[int],
                     decisions: Sequence[PackedDecision]) -> list[torch.Tensor]:
    """Per decision, u(a) of each candidate (with gradients), every distinct command of
    the window scored once."""
    seqs = [tuple([d.first[i], *d.rest[i]]) for d in decisions for i in range(len(d.first))]
    distinct = list(dict.fromkeys(seqs))
    index = {s: i for i, s in enumerate(distinct)}
    u = command_logprobs(model, dtype, premise, distinct)
    return [u[torch.tensor([index[(d.first[i], *d.rest[i])] for i in range(len(d.first))],
                           device=u.device)]
            for d in decisions]


class UnconditionalScores:
    """u(a) per (env, command) for one policy, computed once per distinct command."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.memo: dict[tuple[str, str], float] = {}
        self.forwards = 0  # batched forwards run (for tests)

    def __call__(self, env: str, commands: Sequence[str]) -> list[float]:
        missing = list(dict.fromkeys(c for c in commands if (env, c) not in self.memo))
        if missing:
            tok = self.policy.tokenizer
            with torch.no_grad():
                u = command_logprobs(self.policy.model, self.policy.dtype,
                                     premise_ids(tok, env), encode_candidates(tok, missing))
            self.forwards += 1
            self.memo.update({(env, c): float(v) for c, v in zip(missing, u, strict=True)})
        return [self.memo[(env, c)] for c in commands]
