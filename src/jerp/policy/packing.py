"""Training-time scoring: every decision of an episode's history window in ONE forward.

A rank-mode decision at step t scores the admissible commands as a token trie
continuing the prompt  header + (obs_j, act_j) for j in [ws, t) + obs_t,  where
ws is the window start (prompts.window_start). Steps that share a window start
(and memory slot, H2R's executor) have prompts that are prefixes of one another,
so one sequence holds them all:

    header [slot] obs_ws act_ws ... obs_t0 [trie t0] act_t0 ... obs_t1 [trie t1]

Every token is a node of a tree. A main-line token's parent is the previous
main-line token; a trie node's parent is its trie parent, or the last token of
its step's observation. A token attends to its ancestors and itself only, at
position id = its depth, so each decision sees exactly the tokens, at exactly
the positions, that the cached scorer (kvcache.py) gave it at rollout: the
command scores, and hence pi(a|s), are the ones the agent acted with (tested).
An episode of T steps costs about T/h forward-backward passes instead of T.

The prompt is rebuilt from the trajectory record alone (`context_of`,
`step_prompt_ids`): the first observation, the working set shown, each step's
observation, action, candidates, window start and memory slot text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from jerp.policy.kvcache import build_trie
from jerp.policy.prompts import (
    EpisodeContext,
    action_piece,
    header,
    observation_piece,
    window_start,
)
from jerp.policy.scoring import encode_candidates
from jerp.records import Trajectory


@dataclass
class Target:
    """What one decision is trained towards. `ce`: cross-entropy over the candidates with
    the taken action as the class; `advantage`: the GRPO term (None: no policy gradient)."""

    ce: bool = False
    advantage: float | None = None
    label: str | None = None  # the CE class when not the action taken (a DAgger label)
    old_prob: float | None = None  # pi_old(action | s), recorded at rollout
    temperature: float = 1.0


@dataclass
class PackedDecision:
    anchor: int  # sequence index of the prompt's last token: predicts each command's 1st token
    first: list[int]  # per candidate: its first token id
    nodes: list[list[int]]  # per candidate: sequence indices predicting tokens 2..n
    rest: list[list[int]]  # per candidate: token ids 2..n
    lengths: list[int]
    chosen: int
    target: Target
    step: int


@dataclass
class PackedWindow:
    tokens: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)  # -1: the root
    decisions: list[PackedDecision] = field(default_factory=list)
    traj: int = 0  # index of the trajectory it came from (in the caller's list)
    env: str = ""  # its prompts' environment (calibrated scores need its empty context)

    def add(self, tok: int, parent: int) -> int:
        self.tokens.append(tok)
        self.parents.append(parent)
        return len(self.tokens) - 1

    def extend(self, ids: list[int], last: int) -> int:
        """Append main-line tokens after `last`; returns the new last one."""
        for tok in ids:
            last = self.add(tok, last)
        return last


def context_of(traj: Trajectory, rules: list[str] | None = None) -> EpisodeContext:
    """The episode context a recorded trajectory acted in (rules: its working set, or
    another one to train the same states with different rules)."""
    shown = [r.text for r in traj.rules_shown] if rules is None else rules
    return EpisodeContext(env=traj.env, goal=traj.goal, rules=shown,
                          initial=traj.initial_observation)


def _window_of(traj: Trajectory, t: int, window: int) -> int:
    rec = traj.steps[t].history_from
    return window_start(t, window) if rec is None else rec


class PieceTokenizer:
    """Tokenizes prompt pieces one by one, as the agent does (cached per text)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.cache: dict[str, list[int]] = {}

    def __call__(self, piece: str) -> list[int]:
        got = self.cache.get(piece)
        if got is None:
            got = self.cache[piece] = self.tok(piece, add_special_tokens=False)["input_ids"]
        return got


def step_prompt_ids(pt: PieceTokenizer, traj: Trajectory, t: int, window: int,
                    rules: list[str] | None = None) -> list[int]:
    """The prompt tokens of step t rebuilt from the record (what the agent scored)."""
    ctx = context_of(traj, rules)
    ws = _window_of(traj, t, window)
    slot = traj.steps[t].slot
    ids = list(pt(header(ctx))) + (list(pt(slot)) if slot else [])
    for s in traj.steps[ws:t]:
        ids += pt(observation_piece(ctx.env, s.observation)) + pt(action_piece(s.action))
    return ids + pt(observation_piece(ctx.env, traj.steps[t].observation))


def pack_trajectory(
    pt: PieceTokenizer, traj: Trajectory, targets: dict[int, Target], window: int,
    rules: list[str] | None = None, traj_index: int = 0,
) -> list[PackedWindow]:
    """One packed sequence per window start that has a target step; steps without a
    target (or without a recorded candidate list) only provide context."""
    ctx = context_of(traj, rules)
    groups: dict[tuple[int, str], list[int]] = {}
    for t in sorted(targets):
        s = traj.steps[t]
        if s.admissible and target_class(s, targets[t]) in s.admissible:
            groups.setdefault((_window_of(traj, t, window), s.slot), []).append(t)
    out = []
    for (ws, slot), steps in groups.items():
        w = PackedWindow(traj=traj_index, env=traj.env)
        last = w.extend(pt(header(ctx)) + (pt(slot) if slot else []), -1)
        for t in range(ws, steps[-1] + 1):
            s = traj.steps[t]
            last = w.extend(pt(observation_piece(ctx.env, s.observation)), last)
            if t in steps:
                w.decisions.append(_attach_trie(w, last, pt.tok, s.admissible,
                                                s.admissible.index(target_class(s, targets[t])),
                                                targets[t], t))
            if t < steps[-1]:
                last = w.extend(pt(action_piece(s.action)), last)
        out.append(w)
    return out


def pack_choice(pt: PieceTokenizer, prompt: str, offered: list[str], chosen: int, env: str,
                traj_index: int = 0, step: int = 0) -> PackedWindow:
    """A decision after a free prompt (H2R's planner: memory/planner.PlanChoice) as a
    window of its own: the prompt tokenized whole and the offered options' trie, as
    `Agent.text_scores` scores them at acting time; a candidate-CE target."""
    w = PackedWindow(traj=traj_index, env=env)
    last = w.extend(list(pt(prompt)), -1)
    w.decisions.append(_attach_trie(w, last, pt.tok, offered, chosen, Target(ce=True), step))
    return w


def target_class(step, target: Target) -> str:
    """The decision's class: its DAgger label, else the action the step took (the
    history after it always shows the action taken)."""
    return target.label if target.label is not None else step.action


def _attach_trie(w: PackedWindow, anchor: int, tokenizer, admissible: list[str], chosen: int,
                 target: Target, step: int) -> PackedDecision:
    cands = encode_candidates(tokenizer, admissible)
    trie = build_trie(cands)
    base = len(w.tokens)
    for tok, par in zip(trie.tokens, trie.parents, strict=True):
        w.add(tok, anchor if par < 0 else base + par)
    return PackedDecision(
        anchor=anchor, first=[c[0] for c in cands],
        nodes=[[base + n for n in path] for path in trie.paths],
        rest=[list(c[1:]) for c in cands], lengths=[len(c) for c in cands],
        chosen=chosen, target=target, step=step,
    )


def tree_inputs(w: PackedWindow, dtype: torch.dtype, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(position ids, additive attention mask): each token sees its ancestors and itself."""
    n = len(w.tokens)
    allowed = np.zeros((n, n), dtype=bool)
    depth = np.zeros(n, dtype=np.int64)
    for i, p in enumerate(w.parents):
        if p >= 0:
            allowed[i] = allowed[p]
            depth[i] = depth[p] + 1
        allowed[i, i] = True
    mask = torch.zeros((n, n), dtype=dtype)
    mask.masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
    return torch.from_numpy(depth)[None].to(device), mask[None, None].to(device)


def window_scores(model, w: PackedWindow, dtype: torch.dtype) -> list[torch.Tensor]:
    """Per decision: the summed log-probability of every candidate (differentiable)."""
    dev = model.device
    pos, mask = tree_inputs(w, dtype, dev)
    rows = sorted({d.anchor for d in w.decisions}
                  | {n for d in w.decisions for path in d.nodes for n in path})
    row_of = {r: i for i, r in enumerate(rows)}
    out = model(input_ids=torch.tensor([w.tokens], device=dev), attention_mask=mask,
                position_ids=pos, logits_to_keep=torch.tensor(rows, device=dev), use_cache=False)
    lp = torch.log_softmax(out.logits[0].float(), dim=-1)
    scores = []
    for d in w.decisions:
        first = lp[row_of[d.anchor], torch.tensor(d.first, device=dev)]
        flat_rows = [row_of[n] for path in d.nodes for n in path]
        flat_cols = [t for r in d.rest for t in r]
        owner = [i for i, r in enumerate(d.rest) for _ in r]
        s = first
        if flat_rows:
            picked = lp[torch.tensor(flat_rows, device=dev), torch.tensor(flat_cols, device=dev)]
            s = first + torch.zeros_like(first).index_add(0, torch.tensor(owner, device=dev),
                                                          picked)
        scores.append(s)
    return scores
