"""`python -m llama_cpp.server` with its echoed prompt log-probs at the right position.

llama-cpp-python 0.3.36 pairs each echoed prompt token with the distribution *after*
that token when the model adds no BOS token, as SmolLM2 does not
(abetlen/llama-cpp-python#1983; jerp's client detects it and stops rank mode). Its
completion reads every position's log-probs in one call,
`Llama.logits_to_logprobs(self._scores)`, the only call with a 2-D array: shifting
that array down one row makes row i the distribution that predicts token i, which is
what the OpenAI API (and vLLM) mean. Generated tokens' log-probs (never asked for
by jerp) are not right under this patch. Used only by tests/cluster/test_served_policy.py.
"""

from __future__ import annotations

import numpy as np
from llama_cpp import Llama
from llama_cpp.server.__main__ import main

_log_softmax = Llama.logits_to_logprobs


def _next_token_rows(logits, axis: int = -1):
    out = _log_softmax(logits, axis)
    if np.ndim(out) == 2:
        out = np.concatenate([np.zeros_like(out[:1]), out[:-1]], axis=0)
    return out


Llama.logits_to_logprobs = staticmethod(_next_token_rows)

if __name__ == "__main__":
    main()
