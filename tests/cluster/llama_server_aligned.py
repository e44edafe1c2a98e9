"""`python -m llama_cpp.server` with its echoed prompt log-probs at the right position.

llama-cpp-python 0.3.36 pairs each echoed prompt token with the distribution *after*
that token when the model adds no BOS token, as SmolLM2 does not
(abetlen/llama-cpp-python#1983; jerp's client detects it and stops rank mode). Its
completion reads every position's log-probs in one call,
`Llama.logits_to_logprobs(self._scores)`, the only call with a 2-D array: shifting
that array down one row makes row i the distribution that predicts token i, which is
what the OpenAI API (and vLLM) mean. Generated tokens' log-probs (never asked for
by jerp) are not right under this patch.

It also keeps the completion from sorting the whole 49k vocabulary in Python at every
echoed token (~10 s per command on 2 cores) only to list its top `logprobs`: the
module's `zip` hands that sort the 20 largest (log-prob, token) pairs instead, 20
being the most the OpenAI API gives. Used only by tests/cluster/test_served_policy.py.
"""

from __future__ import annotations

import builtins

import llama_cpp.llama
import numpy as np
from llama_cpp import Llama
from llama_cpp.server.__main__ import main

TOP = 20

_log_softmax = Llama.logits_to_logprobs


def _next_token_rows(logits, axis: int = -1):
    out = _log_softmax(logits, axis)
    if np.ndim(out) == 2:
        out = np.concatenate([np.zeros_like(out[:1]), out[:-1]], axis=0)
    return out


def _top_pairs_zip(*iterables, strict: bool = False):
    """zip, except for `zip(row_of_logprobs, range(vocab))`, which the completion builds
    only to sort: the TOP largest pairs (in no order; sorted next)."""
    if (len(iterables) == 2 and isinstance(iterables[0], np.ndarray)
            and iterables[0].ndim == 1 and isinstance(iterables[1], range)
            and len(iterables[0]) == len(iterables[1]) > TOP):
        row = iterables[0]
        return [(row[i], int(i)) for i in np.argpartition(row, -TOP)[-TOP:]]
    return builtins.zip(*iterables, strict=strict)


Llama.logits_to_logprobs = staticmethod(_next_token_rows)
llama_cpp.llama.zip = _top_pairs_zip  # a module global shadows the builtin there

if __name__ == "__main__":
    main()
