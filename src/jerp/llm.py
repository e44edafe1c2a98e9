"""The text-in, text-out LLM that the LLM reflectors and Reflexion's notes call:
a served model or a locally loaded one, picked by params rules.llm_endpoint.

Apart from agents.py so that stages that only act (rollout) do not read the
reflectors' settings.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jerp.config import Params
from jerp.policy.model import load_policy, model_cache


def llm_generate(p: Params, root: Path, system: str) -> Callable[[str], str]:
    """The LLM reflectors' text-in, text-out model: the server at rules.llm_endpoint (its
    key is read where the client is made, policy/endpoint.connect, never passed around),
    else the local model rules.llm_model (which gets the user prompt alone, as the
    local reflectors were written and tested with)."""
    if p.rules.llm_endpoint:
        from jerp.policy.served import connect

        return connect(p.rules.llm_endpoint, p.rules.llm_model).generate_fn(system)
    return local_generate(p, root)


def local_generate(p: Params, root: Path):
    """A text-in, text-out callable over a locally loaded model (LLM reflector)."""
    import torch

    policy = load_policy(p.rules.llm_model, model_cache(p, root), p.policy.dtype,
                         device=p.policy.device)
    tok = policy.tokenizer

    @torch.no_grad()
    def generate(prompt: str) -> str:
        msgs = [{"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):
            ids = ids["input_ids"]
        ids = ids.to(policy.model.device)
        out = policy.model.generate(ids, max_new_tokens=200, do_sample=False,
                                    pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    return generate
