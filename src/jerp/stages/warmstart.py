"""warmstart: LoRA on the reference successes of the warm-start train games.

A shared prelude for every method (it reads no method-specific param, so DVC's
run cache shares it across `dvc exp run -S run.method=...`): iteration 0 is
the warm-started policy without rules. `warmstart.games_per_type: 0` turns it
off (the papers' protocol): iteration 0 is then the base model.
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.registry import WARMSTART
from jerp.policy.experience import success_items
from jerp.records import (
    AdapterManifest,
    read_tasks,
    read_trajectories,
    write_json,
)
from jerp.stages.common import load_trainable, train_config, write_adapter


def run(p: Params, root: Path) -> dict:
    out = root / paths.adapter_dir(0)
    tl = read_tasks(root / paths.tasks_file())
    if not p.warmstart.games_per_type or WARMSTART not in tl.splits:
        write_adapter(out, None, AdapterManifest(kind="none", base=p.policy.model, iteration=0,
                                                 stage="warmstart (off)"))
        stats = {"stage": "warmstart", "enabled": False}
        write_json(root / paths.train_stats_file(0), stats)
        return stats
    ids = {t.task_id for t in tl.tasks(WARMSTART)}
    refs = [r for r in read_trajectories(root / paths.references_file())
            if r.task_id in ids and r.won]
    policy = load_trainable(p, root, adapter=None)
    from jerp.policy.train import train

    cfg = train_config(p, lr=p.warmstart.lr, epochs=p.warmstart.epochs,
                       max_minutes=p.warmstart.max_minutes, seed=p.run.seed)
    st = train(policy, success_items(refs), cfg, desc="warmstart")
    stats = {"stage": "warmstart", "enabled": True, "references": len(refs), **st.summary()}
    write_adapter(out, policy, AdapterManifest(kind="lora", base=p.policy.model, iteration=0,
                                               stage="warmstart", stats=stats))
    write_json(root / paths.train_stats_file(0), {**stats, "loss_curve": st.history})
    return stats
