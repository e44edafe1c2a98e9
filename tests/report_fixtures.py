"""A small recorded run (two evaluated iterations) written by hand, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path

from jerp import paths
from jerp.metrics_schema import EvalMetrics, TrainRecord, write_record
from jerp.records import Evidence, Proposal, Rule, RuleSnapshot, Trajectory

TYPES = ("pick_and_place_simple", "pick_heat_then_place_in_recep")


def game(task_id: str, task_type: str, won: bool, it: int) -> Trajectory:
    return Trajectory(traj_id=f"{task_id}-{it}", task_id=task_id, env="alfworld", split="eval_out",
                      task_type=task_type, goal="g", steps=[], reward=float(won), won=won,
                      n_steps=5, iteration=it)


def eval_metrics(**kw) -> EvalMetrics:
    """An evaluate@i record: `kw` over zeros for the fields every writer writes."""
    base = {"episodes": 12, "success": 0.0, "score": 0.0, "mean_steps": 5.0,
            "invalid_action_rate": 0.0, "success_by_type": {}, "iteration": 0,
            "rules_in_pool": 0}
    return EvalMetrics(**base | kw)


def train_record(**kw) -> TrainRecord:
    """A training summary as the trainer writes it: `kw` over a finished short run."""
    base = {"stage": "warmstart", "enabled": True, "decisions": 10, "windows": 4,
            "optimizer_steps": 2, "tokens": 1000, "seconds": 90.0, "epochs_done": 1.0,
            "stopped_by_time": False, "tokens_per_s": 11.1}
    return TrainRecord(**base | kw)


def rule(i: int, score: int, created: int, prov: list[str], text: str = "") -> Rule:
    return Rule(id=f"R{i}", text=text or f"rule {i}", score=score, scope=TYPES[i % 2],
                created=created, updated=created, provenance=prov)


# iteration 0 wins 1 of 6 games, iteration 1 wins 4: games g1, g2, g3 flip to won (c = 3),
# none flips to lost (b = 0) -> exact McNemar p = 2 / 2^3 = 0.25
WINS = {0: [True, False, False, False, False, False], 1: [True, True, True, True, False, False]}
# reference states: iteration 0 ranks the reference 1st at 2 of 4, iteration 1 at 3 of 4
RANKS = {0: [1, 2, 1, 3], 1: [1, 1, 1, 2]}
NONE_RANKS = {0: [2, 2, 3, 3], 1: [1, 2, 1, 2]}  # no-rules prompt: 0/4, then 2/4


def write_run(root: Path, *, with_states: bool = True, with_proposals: bool = True) -> Path:
    """Two iterations (0 and 1) of hand-made metrics, eval games, ranks and snapshots."""
    snaps = {
        0: RuleSnapshot(iteration=0, capacity=10, rules=[], next_id=1),
        1: RuleSnapshot(iteration=1, capacity=10, next_id=4, rules=[
            rule(1, 4, 1, ["t1", "t2", "t2"]), rule(2, 2, 1, ["t3"])]),
    }
    for i in (0, 1):
        games = [game(f"g{j}", TYPES[j % 2], w, i) for j, w in enumerate(WINS[i])]
        (root / paths.iter_dir(i)).mkdir(parents=True, exist_ok=True)
        (root / paths.eval_file(i)).write_text(
            "".join(g.model_dump_json() + "\n" for g in games))
        (root / paths.rules_file(i)).write_text(snaps[i].model_dump_json())
        top1 = sum(r == 1 for r in RANKS[i]) / 4
        write_record(root / paths.metrics_file(i), eval_metrics(
            episodes=6, success=sum(WINS[i]) / 6, score=sum(WINS[i]) / 6, iteration=i,
            rules_in_pool=len(snaps[i].rules), expert_top1=top1))
        write_record(root / paths.train_stats_file(i), train_record(
            stage="finetune" if i else "warmstart", iteration=i if i else None,
            ce_last=1.5 - i, loss_curve=[{"step": 1, "ce": 2.0 - i, "pg": 0.1},
                                         {"step": 2, "ce": 1.5 - i, "pg": None}]))
        if with_states:
            rows = [{"task_id": f"g{k}", "task_type": TYPES[k % 2], "step": k, "n_candidates": 5,
                     "rank": {"shown": RANKS[i][k], "none": NONE_RANKS[i][k], "wrong": 3}}
                    for k in range(4)]
            (root / paths.expert_states_file(i)).write_text(
                json.dumps({"iteration": i, "rows": rows}))
    if with_proposals:
        props = [Proposal(op="ADD", text="rule 1", evidence=Evidence(failed="t1")),
                 Proposal(op="ADD", text="rule 2", evidence=Evidence(failed="t3"))]
        (root / paths.proposals_file(1)).write_text(
            "".join(p.model_dump_json() + "\n" for p in props))
    return root
