"""Training speed of the LoRA update (rank mode): tokens/s and the share of the CPU's
bf16 matrix-product rate that it achieves, both measured in this run.

  packed    each history window of an episode is one forward-backward with every
            step's candidate trie attached (policy/packing.py): ~T/h passes per episode
  per-step  the same decisions, one forward-backward each (the naive way)

Model FLOPs per trained token: 2 N (forward) + 2 N (backward to activations; the
frozen weights need no weight gradient) over the N non-embedding parameters, plus
the attention products (the tree mask is dense: 4 L n^2 d forward, x3 with backward)
and lm_head on the rows whose logits are kept. Peak: the median rate of a
2048 x 2048 bf16 (or the policy's dtype) matrix product on the same threads.
Run: .venv/bin/python bench/train.py [--games 6 --runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from jerp.runtime import configure  # noqa: E402

configure(ROOT)

import torch  # noqa: E402

from jerp.config import load_params  # noqa: E402
from jerp.envs.alfworld import AlfWorldEnv, list_tasks, resolve_data_root  # noqa: E402
from jerp.policy.experience import success_items  # noqa: E402
from jerp.policy.model import load_policy, set_threads  # noqa: E402
from jerp.policy.packing import PackedWindow  # noqa: E402
from jerp.policy.train import TrainConfig, TrainItem, pack_items, window_loss  # noqa: E402
from jerp.replay import replay_reference  # noqa: E402
from jerp.stages.finetune import finetune_config  # noqa: E402


def matmul_peak(dtype: torch.dtype, n: int = 2048, runs: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t0))
    return statistics.median(rates)


def window_flops(w: PackedWindow, n_params: int, layers: int, d: int, vocab: int) -> float:
    n = len(w.tokens)
    rows = len({x.anchor for x in w.decisions}
               | {i for x in w.decisions for path in x.nodes for i in path})
    dense = 4 * n_params * n
    attention = 3 * 4 * layers * n * n * d
    head = 3 * 2 * rows * vocab * d
    return dense + attention + head


def time_windows(policy, windows: list[PackedWindow], cfg: TrainConfig, runs: int):
    """Median seconds of a forward-backward over all windows (no optimizer step)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with torch.enable_grad():
            for w in windows:
                loss, _ = window_loss(policy, w, cfg)
                loss.backward()
        times.append(time.perf_counter() - t0)
        policy.model.zero_grad(set_to_none=True)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--games", type=int, default=6)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    p = load_params(ROOT / "params.yaml")
    threads = set_threads(p.policy.threads)
    root = resolve_data_root(p.env.data_dir, os.environ, ROOT)
    env = AlfWorldEnv(root)
    tasks = list_tasks(root, "train")[:: max(1, 3000 // (a.games * 6))][: a.games]
    refs = [replay_reference(env, t) for t in tasks]
    env.close()
    policy = load_policy(p.policy.model, ROOT / ".cache/models", p.policy.dtype, None,
                         trainable=True, lora=p.lora)
    cfg = replace(finetune_config(p, seed=0), lr=1e-4)
    items = success_items(refs)
    packed = pack_items(policy, items, cfg.window)
    single = [w for it in items for k, tg in it.targets.items()
              for w in pack_items(policy, [TrainItem(it.traj, {k: tg})], cfg.window)]
    conf = policy.model.config
    n_params = sum(p.numel() for n, p in policy.model.named_parameters()
                   if "embed" not in n and "lora_" not in n)
    decisions = sum(len(w.decisions) for w in packed)
    time_windows(policy, packed[:1], cfg, 1)  # warm-up
    peak = matmul_peak(policy.dtype)
    print(f"{len(refs)} train walkthroughs, {decisions} decisions, history {cfg.window}, "
          f"{policy.dtype}, {threads} threads; matmul peak {peak / 1e9:.1f} GFLOP/s")
    for name, ws in (("packed", packed), ("per-step", single)):
        sec = time_windows(policy, ws, cfg, a.runs)
        tokens = sum(len(w.tokens) for w in ws)
        flops = sum(window_flops(w, n_params, conf.num_hidden_layers, conf.hidden_size,
                                 conf.vocab_size) for w in ws)
        print(f"{name:8s}: {len(ws):3d} forward-backward passes, {tokens:6d} tokens, "
              f"{tokens / sec:7.0f} tokens/s, {decisions / sec:5.2f} decisions/s, "
              f"{flops / sec / 1e9:6.1f} GFLOP/s = {flops / sec / peak:.0%} of peak "
              f"[median of {a.runs}]")


if __name__ == "__main__":
    main()
