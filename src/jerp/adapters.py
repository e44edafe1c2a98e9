"""The trainable policy and its adapter folders: the LoRA weights loaded for training,
the warm start's training config, adapter folders written and copied.

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


def adapter_weights(policy, folder: Path) -> dict:
    """`folder`'s LoRA weights, named as `policy.model`'s trainable tensors: finetune's KL
    reference when it is iteration 0's adapter (finetune.kl_reference). A folder without
    LoRA weights (no warm start) is the base model: every tensor zero, which makes
    LoRA's product zero too. The policy's own weights are left as they were."""
    import torch
    from peft import load_peft_weights, set_peft_model_state_dict

    from jerp.policy.train import trainable_weights

    model = policy.model
    if read_adapter(folder).kind != "lora":
        return {n: torch.zeros_like(w) for n, w in trainable_weights(model).items()}
    own = trainable_weights(model)
    try:
        set_peft_model_state_dict(model, load_peft_weights(str(folder), device="cpu"))
        ref = trainable_weights(model)
    finally:
        with torch.no_grad():
            for n, w in model.named_parameters():
                if n in own:
                    w.copy_(own[n])
    return ref


def train_config(p: Params, *, lr: float, epochs: float, max_minutes: float,
                 grad_clip: float, seed: int, batch_sequences: int, rft_weight: float,
                 grpo_weight: float, clip: float, entropy: float, kl: float, old_probs: str,
                 steps: int | None):
    """The update's settings: the caller gives its section's budget, batch, step size and
    loss terms (warmstart or finetune), `policy` how prompts were scored. Every field is
    the caller's to give, as in TrainConfig: a default here would be a second schema."""
    from jerp.policy.train import TrainConfig

    return TrainConfig(
        mode=p.policy.mode, window=p.policy.history, score=p.policy.score,
        lr=lr, epochs=epochs, steps=steps, max_minutes=max_minutes, grad_clip=grad_clip,
        seed=seed, batch_sequences=batch_sequences, clip=clip, entropy=entropy, kl=kl,
        rft_weight=rft_weight, grpo_weight=grpo_weight, old_probs=old_probs,
    )


# The GRPO-only fields of a CE-only update. policy/train.py reads clip, entropy, kl and
# old_probs only for decisions with an advantage, and the warm start's items have none;
# they are named here so that the warm start reads no `finetune` param to fill them.
CE_ONLY = {"clip": 0.0, "entropy": 0.0, "kl": 0.0, "old_probs": "rollout"}


def warmstart_config(p: Params, seed: int):
    """The warm start's update: its items carry CE targets only, so the loss is their plain
    cross-entropy (weight 1, no GRPO term). It reads params warmstart and policy only:
    this module must not read `finetune`, or every fine-tuning ablation would retrain the
    warm start (jerp.deps makes a param read here a dependency of the warm start)."""
    ws = p.warmstart
    return train_config(p, lr=ws.lr, epochs=ws.epochs, max_minutes=ws.max_minutes,
                        grad_clip=ws.grad_clip, seed=seed, batch_sequences=ws.batch_sequences,
                        steps=None, rft_weight=1.0, grpo_weight=0.0, **CE_ONLY)


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
