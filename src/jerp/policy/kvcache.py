"""Rank-mode scoring that encodes each token of an episode about once.

Two pieces:

* `PrefixCache`: the KV cache of one token sequence (an episode's prompt). A
  new prompt reuses the longest common prefix with the cached one and only the
  rest is forwarded. Because prompts are append-only (prompts.py), a step
  forwards the previous action and the new observation; a sliding history
  window re-forwards the kept steps once per window (the header stays).
* `score_trie`: the candidate commands as a token trie continuing the cached
  prefix, flattened into ONE sequence of unique trie nodes with a tree
  attention mask (each node sees the prefix and its own ancestors) and
  position ids = prefix length + depth. Each shared leading token ("go to",
  "take ... from") is computed once, the prefix's KV is read in place (no
  per-candidate copy as with a batch-repeated cache), and leaves are never
  forwarded (nothing is predicted from a command's last token). A tree mask
  rather than grouping by first token: one forward per decision and the
  largest possible sharing, for a mask of a few KB.

A command's log-probability is still the exact sum of its tokens' log-probs:
the tree mask gives each node exactly the context it has in the naive
"prompt + command" sequence, at the same positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from jerp.policy.model import Policy


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class PrefixCache:
    """KV cache of `ids` (batch 1) and the next-token log-probs after them."""

    ids: list[int] = field(default_factory=list)
    cache: DynamicCache | None = None
    next_logprobs: torch.Tensor | None = None
    encoded: int = 0  # tokens forwarded so far (for the benchmark)
    rebuilds: int = 0  # times a cached tail had to be dropped

    @torch.no_grad()
    def extend(self, policy: Policy, ids: list[int]) -> torch.Tensor:
        """Make the cache hold `ids`; returns log p(next token | ids) in fp32."""
        if not ids:
            raise ValueError("empty prompt")
        if ids == self.ids and self.next_logprobs is not None:
            return self.next_logprobs
        # Keep at least one token to forward: its logits predict the continuation.
        keep = min(common_prefix(self.ids, ids), len(ids) - 1)
        if self.cache is None or keep == 0:
            self.cache, keep = DynamicCache(config=policy.model.config), 0
        elif keep < len(self.ids):
            self.cache.crop(keep - len(self.ids))
            self.rebuilds += keep < len(self.ids) - 1
        new = torch.tensor([ids[keep:]], device=policy.model.device)
        out = policy.model(input_ids=new, cache=self.cache, use_cache=True, logits_to_keep=1)
        self.cache = out.cache
        self.ids = list(ids)
        self.encoded += len(ids) - keep
        self.next_logprobs = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        return self.next_logprobs


@dataclass
class Trie:
    """Unique non-final command prefixes, flattened in insertion (= topological) order."""

    tokens: list[int]
    parents: list[int]  # index of the parent node, -1 for a first token
    depths: list[int]
    paths: list[list[int]]  # per command: node index of its tokens[:j+1], for j < len - 1


def build_trie(cands: Sequence[Sequence[int]]) -> Trie:
    """Nodes for every command token except the last one (a leaf predicts nothing)."""
    index: dict[tuple[int, int], int] = {}
    tokens: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    paths: list[list[int]] = []
    for c in cands:
        parent, path = -1, []
        for depth, t in enumerate(c[:-1]):
            key = (parent, t)
            node = index.get(key)
            if node is None:
                node = index[key] = len(tokens)
                tokens.append(t)
                parents.append(parent)
                depths.append(depth)
            path.append(node)
            parent = node
        paths.append(path)
    return Trie(tokens, parents, depths, paths)


def tree_mask(trie: Trie, prefix_len: int, dtype: torch.dtype,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Additive mask (1, 1, N, prefix_len + N): a node sees the prefix, its ancestors, itself."""
    n = len(trie.tokens)
    allowed = torch.zeros((n, n), dtype=torch.bool)
    for i, p in enumerate(trie.parents):
        allowed[i, i] = True
        if p >= 0:
            allowed[i] |= allowed[p]  # parents come first, so their rows are complete
    mask = torch.zeros((n, prefix_len + n), dtype=dtype)
    mask[:, prefix_len:].masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None].to(device)


@torch.no_grad()
def score_trie(policy: Policy, prefix: PrefixCache, cands: Sequence[Sequence[int]]) -> list[float]:
    """Summed log p(command | prefix) for each command, one forward over the trie's nodes."""
    first = prefix.next_logprobs
    if first is None:
        raise ValueError("extend the prefix cache before scoring")
    trie = build_trie(cands)
    scores = first[[c[0] for c in cands]].tolist()  # one device-to-host copy
    if not trie.tokens:
        return scores
    p = len(prefix.ids)
    n = len(trie.tokens)
    dtype = next(policy.model.parameters()).dtype
    dev = policy.model.device
    out = policy.model(
        input_ids=torch.tensor([trie.tokens], device=dev),
        attention_mask=tree_mask(trie, p, dtype, dev),
        position_ids=torch.tensor([[p + d for d in trie.depths]], device=dev),
        cache=prefix.cache,
        use_cache=True,
    )
    prefix.cache.crop(-n)  # the nodes were appended to the episode's cache: drop them
    prefix.encoded += n
    lp = torch.log_softmax(out.logits[0].float(), dim=-1)
    rows = [node for path in trie.paths for node in path]
    cols = [t for c in cands for t in c[1:]]
    picked = lp[rows, cols].tolist() if rows else []
    k = 0
    for i, path in enumerate(trie.paths):
        scores[i] += sum(picked[k : k + len(path)])
        k += len(path)
    return scores
