"""Reference-state accuracy (top-1) and MRR under the three candidate scorings.

    python bench/calibration.py --root DIR [--policy LABEL=ADAPTER[@RULES]] ...

For each policy (no adapter: the base model), the eval split's reference states
are ranked as evaluate@i ranks them (workers.rank_states, "shown" condition: the
pool's working set, if a rules snapshot is given) and the reference action's
rank is read under `sum`, `mean` and `calibrated` from ONE scoring pass (the
conditional scores are the same; only the value the softmax ranks by differs).
Its `sum` row must equal the pipeline's recorded expert_top1 / expert_mrr for
the same adapter and pool: that checks this loop against the stage's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jerp.config import load_params
from jerp.envs.base import Observation, Task
from jerp.jobs import AgentSpec, Job, agent, job_retriever
from jerp.metrics import expert_metrics
from jerp.policy.prompts import EpisodeContext
from jerp.policy.scoring import SCORINGS, candidate_values, rank_of
from jerp.records import read_trajectories


def rank_all(job: Job, refs) -> list[dict]:
    """Per reference state: {"task_type", "rank": {scoring: rank}} (expert_metrics' rows)."""
    ag = agent(job)
    retrieve = job_retriever(job)
    rows = []
    for ref in refs:
        task = Task(ref.task_id, ref.env, ref.split, ref.task_type, "")
        shown = retrieve(task, ref.goal) if retrieve else []
        ctx = EpisodeContext(env=ref.env, goal=ref.goal, rules=[r.text for r in shown],
                             initial=ref.initial_observation)
        for s in ref.steps:
            if s.admissible:
                ob = Observation(s.observation, s.admissible, ref.goal, ref.task_type)
                scores, lengths = ag.scores(ctx, ob)
                u = ag.unconditional(ref.env, s.admissible)
                rank = {}
                for how in SCORINGS:
                    if s.action not in s.admissible:
                        rank[how] = len(s.admissible) + 1
                    else:
                        rank[how] = rank_of(candidate_values(scores, lengths, how, u),
                                            s.admissible.index(s.action))
                rows.append({"task_type": ref.task_type, "rank": rank})
            ctx.history.append((s.observation, s.action))
        ag.release(ctx)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="project folder with data/")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--policy", action="append", required=True,
                    help="LABEL=ADAPTER[@RULES]; ADAPTER 'none' is the base model")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    p = load_params(args.params)
    refs = [r for r in read_trajectories(args.root / "data" / "references.jsonl")
            if r.split == p.env.eval_split]
    out = {}
    print(f"{'policy':<10} " + " ".join(f"{h + ' top1/MRR':>22}" for h in SCORINGS))
    for spec in args.policy:
        label, rest = spec.split("=", 1)
        adapter, _, rules = rest.partition("@")
        job = Job(p, args.root, AgentSpec(None if adapter == "none" else Path(adapter),
                                          seed=p.run.seed), Path(rules) if rules else None)
        rows = rank_all(job, refs)
        figs = {}
        for how in SCORINGS:
            m = expert_metrics([{"task_type": r["task_type"], "rank": {"shown": r["rank"][how]}}
                                for r in rows])
            figs[how] = {"expert_top1": m["expert_top1"], "expert_mrr": m["expert_mrr"],
                         "states": m["expert_states"]}
        out[label] = figs
        print(f"{label:<10} " + " ".join(
            f"{figs[h]['expert_top1']:>13.3f} / {figs[h]['expert_mrr']:.3f}" for h in SCORINGS),
            flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
