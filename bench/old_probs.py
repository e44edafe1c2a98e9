"""Measurement: how far the training scorer's pi(a|s) is from the one recorded while
acting, for the same weights, before any step (why `finetune.old_probs: recompute`).

    python bench/old_probs.py [--project DIR] [--iteration I] [--dtypes bfloat16,float32]

Reads a finished run's rollouts of iteration I (default 1) and the adapter that played
them (iteration I-1's), packs the GRPO decisions as finetune@I does, and scores them with
the trainable policy in each dtype, and with the acting load in the first one. Prints
the median, 90th percentile and largest |r - 1| of r = pi_train / pi_recorded, and the
share beyond the clip range. Slow on 2 cores (bf16 about a minute, fp32 several).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from jerp import paths
from jerp.adapters import model_cache
from jerp.config import load_params
from jerp.policy.experience import grpo_items
from jerp.policy.model import load_policy
from jerp.policy.train import pack_items, window_loss
from jerp.records import read_trajectories
from jerp.stages.finetune import finetune_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, default=Path("."))
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--dtypes", default="bfloat16,float32")
    a = ap.parse_args()
    root = a.project.resolve()
    p = load_params(root / "params.yaml")
    rollouts = read_trajectories(root / paths.rollouts_file(a.iteration))
    refs = {r.task_id: r for r in read_trajectories(root / paths.references_file()) if r.won}
    items = grpo_items(rollouts, refs, keep_zero=True).items
    cfg = finetune_config(p, seed=0)
    dtypes = a.dtypes.split(",")
    cases = [(dtypes[0], False)] + [(d, True) for d in dtypes]
    print(f"{len(rollouts)} episodes of iteration {a.iteration}, adapter of {a.iteration - 1}")
    for dtype, trainable in cases:
        t0 = time.perf_counter()
        policy = load_policy(p.policy.model, model_cache(p, root), dtype,
                             root / paths.adapter_dir(a.iteration - 1), trainable=trainable,
                             lora=p.lora)
        ratios: list[float] = []
        with torch.no_grad():
            for w in pack_items(policy, items, cfg.window):
                ratios += window_loss(policy, w, cfg)[1]["ratios"]
        dev = sorted(abs(r - 1) for r in ratios)
        n = len(dev)
        print(f"{dtype:9} {'trainable' if trainable else 'acting':9} n={n} "
              f"mean r={statistics.fmean(ratios):.4f} median |r-1|={dev[n // 2]:.4f} "
              f"p90={dev[int(n * 0.9)]:.4f} max={dev[-1]:.4f} "
              f"beyond clip={sum(d > cfg.clip for d in dev) / n:.3f} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
