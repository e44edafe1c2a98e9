"""What several stages share: loading the agent, retrieving working sets."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.base import Env, Task
from jerp.envs.registry import data_root, env_factory
from jerp.policy.agent import Agent
from jerp.policy.model import load_policy, set_threads
from jerp.policy.rollout import EpisodeSpec, Retrieve, play
from jerp.records import RuleShown, RuleSnapshot, Trajectory


def model_cache(p: Params, root: Path) -> Path:
    return Path(p.policy.cache_dir) if p.policy.cache_dir else root / paths.model_cache()


def make_env(p: Params, root: Path) -> Callable[[], Env]:
    """The run's environment factory, with its data folder resolved at the edge."""
    return env_factory(p.env, data_root(p.env, os.environ, root))


def play_episodes(
    p: Params, root: Path, agent: Agent, specs: list[EpisodeSpec], meta: dict,
    retrieve: Retrieve | None, desc: str,
) -> list[Trajectory]:
    """Play specs with the run's environment, step limit and lockstep batch."""
    return play(specs, make_env(p, root), agent, p.env.max_steps, p.policy.batch_envs, meta,
                retrieve, desc=desc)


def load_agent(p: Params, root: Path, seed: int, adapter: Path | None = None) -> Agent:
    set_threads(p.policy.threads)
    policy = load_policy(p.policy.model, model_cache(p, root), p.policy.dtype, adapter)
    return Agent(policy, p.policy, seed=seed)


def retriever(p: Params, root: Path, pool: RuleSnapshot | None) -> Retrieve | None:
    """The per-episode working-set lookup, or None when no rules are shown."""
    if pool is None or not pool.rules or not p.rules.top_k:
        return None
    from jerp.memory.retrieve import working_set

    def retrieve(task: Task, goal: str) -> list[RuleShown]:
        rules = working_set(pool, task.task_type, goal, p.rules.top_k, p.rules.retrieval,
                            root / paths.index_cache())
        return [RuleShown(id=r.id, text=r.text) for r in rules]

    return retrieve


def local_generate(p: Params, root: Path):
    """A text-in, text-out callable over a locally loaded model (LLM reflector)."""
    import torch

    policy = load_policy(p.rules.llm_model, model_cache(p, root), p.policy.dtype)
    tok = policy.tokenizer

    @torch.no_grad()
    def generate(prompt: str) -> str:
        msgs = [{"role": "user", "content": prompt}]
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
        if not isinstance(ids, torch.Tensor):
            ids = ids["input_ids"]
        out = policy.model.generate(ids, max_new_tokens=200, do_sample=False,
                                    pad_token_id=tok.pad_token_id)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    return generate
