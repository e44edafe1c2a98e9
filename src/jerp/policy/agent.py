"""The acting agent: turns episode contexts into actions with the policy model.

`rank` scores every admissible command (the default for small models);
`generate` writes ReAct-style text that is parsed back into a command.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from jerp.config import PolicyParams
from jerp.envs.base import Observation
from jerp.policy.calibration import UnconditionalScores
from jerp.policy.kvcache import PrefixCache, score_trie
from jerp.policy.model import Policy
from jerp.policy.prompts import EpisodeContext, build_prompt, prompt_pieces, window_start
from jerp.policy.scoring import (
    best_untaken,
    candidate_probs,
    candidate_values,
    encode_candidates,
    pick,
    rank_of,
)

THINK = "think:"
# WebShop takes free-text searches, on any page (as upstream); they cannot be listed among
# the admissible commands. A generated `search[<text>]` is accepted where the admissible
# commands are WebShop's `search[...]` / `click[...]` (ALFWorld's never are).
_FREE_SEARCH = re.compile(r"search\[(.*\S.*)\]", re.IGNORECASE | re.DOTALL)
_WEBSHOP_COMMAND = re.compile(r"(search|click)\[.*\]", re.DOTALL)


@dataclass
class Decision:
    action: str
    logprob: float | None
    valid: bool  # False: generated text that matched no admissible command
    prob: float | None = None  # pi(action | s) under the candidate softmax (rank mode)
    temperature: float | None = None
    history_from: int = 0  # first past step the prompt showed (window start)


def parse_generated(text: str, admissible: list[str]) -> tuple[str, bool]:
    """First non-empty line, without '>' or 'Action:' prefixes, matched case-insensitively
    against the admissible commands; in WebShop also any non-empty `search[<text>]`."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for prefix in (">", "action:", "command:"):
        if line.lower().startswith(prefix):
            line = line[len(prefix) :].strip()
    if line.lower().startswith(THINK):
        return line, True
    by_lower = {a.lower(): a for a in admissible}
    if line.lower() in by_lower:
        return by_lower[line.lower()], True
    free = _FREE_SEARCH.fullmatch(line)
    if free and admissible and all(_WEBSHOP_COMMAND.fullmatch(a) for a in admissible):
        return f"search[{free.group(1).strip()}]", True
    return line, False


@dataclass
class EpisodeState:
    """Per-episode scratch kept on `EpisodeContext.state`: the prompt's KV cache, the
    tokens of each prompt piece, and the episode's own sampling stream (so sampled
    decisions do not depend on which episodes share a batch or a worker)."""

    cache: PrefixCache
    pieces: dict[str, list[int]]
    rng: random.Random


class Agent:
    def __init__(self, policy: Policy, params: PolicyParams, seed: int = 0):
        self.policy = policy
        self.params = params
        self.seed = seed
        self.rng = random.Random(seed)
        self.unconditional = UnconditionalScores(policy)  # calibrated scores' offsets
        self.text_cache = PrefixCache()  # option_values' prompts (H2R's planner)

    def _state(self, ctx: EpisodeContext) -> EpisodeState:
        if not isinstance(ctx.state, EpisodeState):
            ctx.state = EpisodeState(PrefixCache(), {}, random.Random(f"{self.seed}:{ctx.seed}"))
        return ctx.state

    def prompt_ids(self, ctx: EpisodeContext, observation: str) -> list[int]:
        """The prompt's tokens: its pieces tokenized one by one (each once per episode).

        The concatenation is what both the cached and the naive scorers encode;
        it matches tokenizing `build_prompt`'s text whole (pieces start at a
        word or line boundary; checked on real games in tests/test_kvcache.py).
        """
        st = self._state(ctx)
        tok = self.policy.tokenizer
        ids: list[int] = []
        for piece in prompt_pieces(ctx, observation, self.params.history):
            got = st.pieces.get(piece)
            if got is None:
                got = st.pieces[piece] = tok(piece, add_special_tokens=False)["input_ids"]
            ids += got
        return ids

    def decide(self, ctxs: list[EpisodeContext], obs: list[Observation]) -> list[Decision]:
        if self.params.mode == "rank":
            out = [self._rank(c, o) for c, o in zip(ctxs, obs, strict=True)]
        else:
            out = self._generate(ctxs, obs)
        for c, d in zip(ctxs, out, strict=True):
            d.history_from = window_start(len(c.history), self.params.history)
        return out

    def scores(self, ctx: EpisodeContext, ob: Observation) -> tuple[list[float], list[int]]:
        """Log p(command | prompt) for every admissible command, and token counts.

        The episode's cached prefix is extended with what is new since the last
        call on this context, then the commands are scored as a trie continuing it.
        """
        st = self._state(ctx)
        st.cache.extend(self.policy, self.prompt_ids(ctx, ob.text))
        cands = encode_candidates(self.policy.tokenizer, ob.admissible)
        return score_trie(self.policy, st.cache, cands), [len(c) for c in cands]

    def offsets(self, ctx: EpisodeContext, ob: Observation) -> list[float] | None:
        """Each command's log-probability under an empty context when `policy.score` is
        "calibrated" (cached per command for this policy), else None."""
        if self.params.score != "calibrated":
            return None
        return self.unconditional(ctx.env, ob.admissible)

    def values(self, ctx: EpisodeContext, ob: Observation) -> list[float]:
        """What the candidate softmax ranks by (`policy.score`), per admissible command."""
        scores, lengths = self.scores(ctx, ob)
        return candidate_values(scores, lengths, self.params.score, self.offsets(ctx, ob))

    def text_scores(self, prompt: str, options: Sequence[str]) -> tuple[list[float], list[int]]:
        """Log p(option | prompt) and token counts, each option scored as a command is;
        consecutive prompts that share a prefix (a plan growing) reuse its KV cache."""
        tok = self.policy.tokenizer
        self.text_cache.extend(self.policy, tok(prompt, add_special_tokens=False)["input_ids"])
        cands = encode_candidates(tok, options)
        return score_trie(self.policy, self.text_cache, cands), [len(c) for c in cands]

    def option_values(self, env: str, prompt: str, options: Sequence[str]) -> list[float]:
        """Options after a free prompt valued as the candidate softmax values commands
        (`policy.score`): H2R's planner chooses its subgoals with the acting policy."""
        scores, lengths = self.text_scores(prompt, options)
        offsets = (self.unconditional(env, list(options))
                   if self.params.score == "calibrated" else None)
        return candidate_values(scores, lengths, self.params.score, offsets)

    def release(self, ctx: EpisodeContext) -> None:
        """Free an ended episode's KV cache."""
        ctx.state = None

    def _rank(self, ctx: EpisodeContext, ob: Observation) -> Decision:
        scores, lengths = self.scores(ctx, ob)
        rng = self._state(ctx).rng
        temp = self.params.temperature
        offsets = self.offsets(ctx, ob)
        if temp <= 0 and self.params.avoid_repeats:
            # Deterministic, so the command taken has probability 1 under this rule.
            taken = {a for o, a in ctx.history if o == ob.text}
            values = candidate_values(scores, lengths, self.params.score, offsets)
            i = best_untaken(values, ob.admissible, taken)
            return Decision(ob.admissible[i], scores[i], True, prob=1.0, temperature=temp)
        probs = candidate_probs(scores, lengths, self.params.score, temp, offsets)
        i = pick(probs, temp, rng)
        return Decision(ob.admissible[i], scores[i], True, prob=probs[i], temperature=temp)

    def expert_rank(self, ctx: EpisodeContext, ob: Observation, expert: str) -> int:
        """1-based rank of the expert's action among the admissible commands under greedy
        choice (1: the greedy policy takes it); len(admissible) + 1 if it is not there."""
        if expert not in ob.admissible:
            return len(ob.admissible) + 1
        return rank_of(self.values(ctx, ob), ob.admissible.index(expert))

    @torch.no_grad()
    def _generate(self, ctxs: list[EpisodeContext], obs: list[Observation]) -> list[Decision]:
        tok = self.policy.tokenizer
        prompts = [build_prompt(c, o.text, self.params.history, o.admissible)
                   for c, o in zip(ctxs, obs, strict=True)]
        tok.padding_side = "left"
        batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False
                    ).to(self.policy.model.device)
        sample = self.params.temperature > 0
        out = self.policy.model.generate(
            **batch,
            max_new_tokens=self.params.max_new_tokens,
            do_sample=sample,
            temperature=self.params.temperature if sample else None,
            top_p=None, top_k=None,
            pad_token_id=tok.pad_token_id,
        )
        texts = tok.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        decisions = []
        for text, o in zip(texts, obs, strict=True):
            action, valid = parse_generated(text, o.admissible)
            decisions.append(Decision(action, None, valid, temperature=self.params.temperature))
        return decisions
