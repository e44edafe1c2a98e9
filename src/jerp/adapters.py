"""The trainable policy and its adapter folders: the LoRA weights loaded for training,
the training config from params, adapter folders written and copied.

Apart from agents.py (the acting agent) so that the warm start, which trains but
never retrieves rules, imports nothing that reads a method's settings.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from jerp.config import Params
from jerp.policy.model import load_policy, model_cache, read_adapter, set_threads
from jerp.records import ADAPTER_MANIFEST, AdapterManifest, atomic_dir, write_json


def load_trainable(p: Params, root: Path, adapter: Path | None):
    """The policy with trainable LoRA weights: `adapter`'s, or fresh ones (params lora)."""
    set_threads(p.policy.threads)
    return load_policy(p.policy.model, model_cache(p, root), p.policy.dtype, adapter,
                       trainable=True, lora=p.lora, device=p.policy.device)


def train_config(p: Params, *, lr: float, epochs: float, max_minutes: float, seed: int):
    from jerp.policy.train import TrainConfig

    fp = p.finetune
    return TrainConfig(
        mode=p.policy.mode,
        lr=lr, epochs=epochs, max_minutes=max_minutes, seed=seed,
        batch_sequences=fp.batch_sequences, window=p.policy.history, score=p.policy.score,
        clip=fp.clip, entropy=fp.entropy, kl=fp.kl,
        grpo_weight=fp.grpo_weight if fp.algorithm == "rft+grpo" else 1.0,
    )


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
