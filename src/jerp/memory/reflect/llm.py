"""The LLM reflector: a prompt, a model call, and the strict grammar's parser.

The model only ever proposes; `grammar.parse_operations` decides what is a
valid operation, and `pool.revise` decides what it does to the pool. The
prompt shows the pool (ids, scores, scopes), one failed rollout, one
reference success, and where the contrastive alignment says they diverge,
so even a small model has the key step in front of it.

`openai_generate` talks to any OpenAI-compatible /chat/completions endpoint
(vLLM, llama.cpp server, a hosted API) with the standard library only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from jerp.memory.reflect.contrastive import find_divergence
from jerp.memory.reflect.grammar import GRAMMAR, parse_operations
from jerp.records import Evidence, Proposal, RuleSnapshot, Trajectory

Generate = Callable[[str], str]

SYSTEM = ("You maintain a pool of short, general rules that help an agent act in a text "
          "world. You answer only with pool operations in the required grammar.")


def render_pool(pool: RuleSnapshot, scope: str) -> str:
    rules = [r for r in pool.rules if r.scope in (scope, "general")]
    if not rules:
        return "(the pool is empty)"
    return "\n".join(f"{r.id} [score {r.score}, {r.scope}] {r.text}" for r in rules)


def render_trajectory(t: Trajectory, max_steps: int = 40, obs_chars: int = 120) -> str:
    outcome = "SUCCESS" if t.won else f"FAILURE (reward {t.reward:g})"
    lines = [f"Goal: {t.goal}", f"Outcome: {outcome} after {len(t.steps)} steps"]
    for i, s in enumerate(t.steps[:max_steps]):
        obs = " ".join(s.observation.split())[:obs_chars]
        lines.append(f"{i}. > {s.action}" + (f"  [{obs}]" if obs else ""))
    if len(t.steps) > max_steps:
        lines.append(f"... ({len(t.steps) - max_steps} more steps)")
    return "\n".join(lines)


def build_prompt(failed: Trajectory, reference: Trajectory | None, pool: RuleSnapshot,
                 max_ops: int = 3, max_steps: int = 40) -> str:
    """The reflector prompt: task, pool, both trajectories, divergence hint, grammar."""
    rules = render_pool(pool, failed.task_type)
    parts = [f"Task type: {failed.task_type}",
             f"Current rules (for this task type and general):\n{rules}",
             f"FAILED attempt:\n{render_trajectory(failed, max_steps)}"]
    if reference is not None:
        parts.append(f"SUCCESSFUL reference:\n{render_trajectory(reference, max_steps)}")
        d = find_divergence(failed, reference)
        if d is not None:
            parts.append(f"The attempts part at failed step {d.failed_step} / reference step "
                         f"{d.ref_step} ('{reference.actions[d.ref_step]}').")
    parts.append(f"Propose at most {max_ops} operations that would have prevented the failure."
                 f"\n{GRAMMAR}")
    return "\n\n".join(parts)


def reflect_llm(
    generate: Generate,
    failed: Trajectory,
    reference: Trajectory | None,
    pool: RuleSnapshot,
    *,
    max_ops: int = 3,
    max_chars: int = 240,
    max_downvotes: int = 2,
) -> list[Proposal]:
    """Ask the model, parse its answer; accepted proposals first, then the rejected ones."""
    prompt = build_prompt(failed, reference, pool, max_ops)
    answer = generate(prompt)
    d = find_divergence(failed, reference) if reference is not None else None
    evidence = Evidence(failed=failed.traj_id, reference=reference.traj_id if reference else None,
                        diverge_step=d.failed_step if d else None)
    accepted, rejected = parse_operations(
        answer, pool, max_ops, max_chars, max_downvotes=max_downvotes, scope=failed.task_type,
        evidence=evidence, rationale="llm reflection")
    return accepted + rejected


def _post(url: str, payload: dict, headers: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def openai_generate(
    base_url: str,
    model: str,
    api_key: str | None = None,
    *,
    system: str = SYSTEM,
    temperature: float = 0.0,
    max_tokens: int = 512,
    timeout: float = 120.0,
    retries: int = 2,
) -> Generate:
    """A `generate` callable for an OpenAI-compatible chat endpoint (e.g. http://host:8000/v1)."""
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def generate(prompt: str) -> str:
        payload = {"model": model, "temperature": temperature, "max_tokens": max_tokens,
                   "messages": [{"role": "system", "content": system},
                                {"role": "user", "content": prompt}]}
        for attempt in range(retries + 1):
            try:
                body = _post(url, payload, headers, timeout)
                return body["choices"][0]["message"]["content"] or ""
            except (urllib.error.URLError, TimeoutError) as e:
                if attempt == retries or (isinstance(e, urllib.error.HTTPError) and e.code < 500):
                    raise
                time.sleep(2**attempt)
        raise AssertionError("unreachable")

    return generate
