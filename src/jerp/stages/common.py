"""What several stages share: loading the agent, retrieving working sets."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from jerp import paths, runners
from jerp.config import Params
from jerp.envs.base import Env, Task
from jerp.envs.registry import data_root, env_factory
from jerp.policy.agent import Agent
from jerp.policy.model import load_policy, read_adapter, set_threads
from jerp.policy.rollout import EpisodeSpec, Retrieve, StepMemory
from jerp.records import (
    ADAPTER_MANIFEST,
    AdapterManifest,
    RuleShown,
    RuleSnapshot,
    Trajectory,
    atomic_dir,
    write_json,
)
from jerp.runtime import origin
from jerp.workers import AgentSpec, Job, chunks, fingerprint, play_chunk


def model_cache(p: Params, root: Path) -> Path:
    return Path(p.policy.cache_dir) if p.policy.cache_dir else origin(root) / paths.model_cache()


def make_env(p: Params, root: Path) -> Callable[[], Env]:
    """The run's environment factory, with its data folder resolved at the edge."""
    return env_factory(p.env, data_root(p.env, os.environ, root))


def policy_version(adapter: Path | None) -> str:
    """What Trajectory.policy_version records; checks the adapter folder up front, so a
    missing or broken one stops the stage before any worker starts."""
    m = read_adapter(adapter) if adapter is not None else None
    return str(adapter) if m is not None and m.kind == "lora" else "base"


def play_episodes(
    p: Params, root: Path, agent: AgentSpec, specs: list[EpisodeSpec], meta: dict,
    rules: Path | None, desc: str, examples: tuple[Path, ...] = (),
    step_memory: StepMemory | None = None,
) -> list[Trajectory]:
    """Play specs in chunks on the run's task runner (params `runner`), with the run's
    environment, step limit and lockstep batch; `rules`: the pool snapshot whose working
    sets the episodes show (None: no rules); `examples`: the trajectory files ExpeL's
    in-context successes come from (empty: none); `step_memory`: what fills each
    decision's memory slot (a picklable rollout.StepMemory; None: no slot)."""
    job = Job(p, root, agent, rules, meta, desc, examples=examples, step_memory=step_memory)
    ranges = chunks(len(specs), runners.workers(p), p.runner.chunk_episodes)
    key = fingerprint(job, [_spec_key(s) for s in specs])
    parts = runners.spread(
        play_chunk, [(job, specs[a:b], a) for a, b in ranges], name=desc, size=len,
        tally=lambda done: _success([t for part in done for t in part]),
        threads=runners.threads(p), key=key)
    return [t for part in parts for t in part]


def _spec_key(s: EpisodeSpec) -> tuple:
    """What an episode's result depends on besides the job (a retry's notes included)."""
    base = (s.task.task_id, s.task.source, s.episode)
    return (*base, s.trial, tuple(s.notes)) if s.trial or s.notes else base


def _success(trajs: list[Trajectory]) -> str:
    won = sum(t.won for t in trajs)
    return f"{won}/{len(trajs)} won so far"


def load_agent(p: Params, root: Path, seed: int, adapter: Path | None = None,
               temperature: float | None = None) -> Agent:
    """The acting agent: base model + `adapter` (a pipeline adapter folder; an error
    if it is missing or broken, never a silent fall back to the base model), or the
    served model at params `policy.endpoint` (no local model loaded)."""
    pp = p.policy if temperature is None else p.policy.model_copy(
        update={"temperature": temperature})
    if pp.endpoint is not None:
        from jerp.policy.endpoint import served_agent

        return served_agent(pp, seed, adapter)
    set_threads(p.policy.threads)
    policy = load_policy(p.policy.model, model_cache(p, root), p.policy.dtype, adapter,
                         device=p.policy.device)
    return Agent(policy, pp, seed=seed)


def load_trainable(p: Params, root: Path, adapter: Path | None):
    """The policy with trainable LoRA weights: `adapter`'s, or fresh ones (params lora)."""
    set_threads(p.policy.threads)
    return load_policy(p.policy.model, model_cache(p, root), p.policy.dtype, adapter,
                       trainable=True, lora=p.lora, device=p.policy.device)


def train_config(p: Params, *, lr: float, epochs: float, max_minutes: float,
                 grad_clip: float, seed: int, rft_weight: float, grpo_weight: float):
    """The update's settings, every one from params: the caller gives its section's budget,
    step size and loss-term weights (warmstart or finetune), `policy` how prompts were
    scored, `finetune` the batch and the GRPO term's shape."""
    from jerp.policy.train import TrainConfig

    fp = p.finetune
    return TrainConfig(
        mode=p.policy.mode, window=p.policy.history, score=p.policy.score,
        lr=lr, epochs=epochs, max_minutes=max_minutes, grad_clip=grad_clip, seed=seed,
        batch_sequences=fp.batch_sequences, clip=fp.clip, entropy=fp.entropy, kl=fp.kl,
        rft_weight=rft_weight, grpo_weight=grpo_weight,
    )


def warmstart_config(p: Params, seed: int):
    """The warm start's update: its items carry CE targets only, so the loss is their plain
    cross-entropy (weight 1, no GRPO term)."""
    ws = p.warmstart
    return train_config(p, lr=ws.lr, epochs=ws.epochs, max_minutes=ws.max_minutes,
                        grad_clip=ws.grad_clip, seed=seed, rft_weight=1.0, grpo_weight=0.0)


def finetune_config(p: Params, seed: int):
    """finetune@i's update (params finetune). The term weights apply in rft+grpo; a
    one-term algorithm weighs its term 1."""
    fp = p.finetune
    both = fp.algorithm.has_rft and fp.algorithm.has_grpo
    return train_config(p, lr=fp.lr, epochs=fp.epochs, max_minutes=fp.max_minutes,
                        grad_clip=fp.grad_clip, seed=seed,
                        rft_weight=fp.rft_weight if both else 1.0,
                        grpo_weight=fp.grpo_weight if both else 1.0)


def write_adapter(out: Path, policy, manifest: AdapterManifest) -> None:
    """Atomically (re)write an adapter folder: the LoRA weights (if any) + adapter.json.
    Only the LoRA weights (3.7 MB at r 8), never a merged model: rollout and training
    must score with the same unmerged adapter."""
    with atomic_dir(out) as tmp:
        if policy is not None:
            policy.model.save_pretrained(str(tmp))
        write_json(tmp / ADAPTER_MANIFEST, manifest.model_dump())


def copy_adapter(src: Path, out: Path, iteration: int) -> None:
    """Pass adapter `src` through unchanged (methods without policy updates)."""
    m = read_adapter(src)
    with atomic_dir(out) as tmp:
        for f in src.iterdir():
            if f.is_file() and f.name != ADAPTER_MANIFEST:
                shutil.copy2(f, tmp / f.name)
        m = m.model_copy(update={"iteration": iteration, "parent": str(src),
                                 "stage": "passthrough"})
        write_json(tmp / ADAPTER_MANIFEST, m.model_dump())


def retriever(p: Params, root: Path, pool: RuleSnapshot | None) -> Retrieve | None:
    """The per-episode working-set lookup, or None when no rules are shown."""
    if pool is None or not pool.rules or not p.rules.top_k:
        return None
    from jerp.memory.base import Query
    from jerp.memory.choose import memory_for

    memory = memory_for(p, pool, root)  # H2R methods: planning memories for the task

    def retrieve(task: Task, goal: str) -> list[RuleShown]:
        return memory.retrieve(Query(task.task_type, goal), p.rules.top_k)

    return retrieve


def step_memory_for(p: Params, pool: RuleSnapshot | None):
    """The executor's per-step memory slot (H2R methods), or None: the subgoal of each
    decision and its execution memories (memory/executor.py); pass it to the rollout as
    `step_memory`. Without execution memories yet it still tracks the subgoal (from the
    environment's default plan)."""
    from jerp.methods import parts

    if pool is None or not parts(p.run.method).hierarchy:
        return None
    from jerp.memory.executor import SubgoalMemory

    return SubgoalMemory(pool, p.env.name, p.rules.execution_top_k, p.rules.subgoal_budget)


def llm_generate(p: Params, root: Path, system: str) -> Callable[[str], str]:
    """The LLM reflectors' text-in, text-out model: the server at rules.llm_endpoint (its
    key is read where the client is made, policy/endpoint.connect, never passed around),
    else the local model rules.llm_model (which gets the user prompt alone, as the
    local reflectors were written and tested with)."""
    if p.rules.llm_endpoint:
        from jerp.policy.endpoint import connect

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
