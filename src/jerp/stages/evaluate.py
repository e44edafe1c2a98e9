"""evaluate@i: the policy of iteration i with pool i on the eval split.

Besides success it ranks the reference action at every state of the eval games'
reference successes (`expert_top1`, `expert_mrr`): with a 135M model success on a
dozen games cannot separate methods, and this accuracy moves long before success
does, at one decision per state. Methods that show rules are ranked three ways
(their working set, no rules, another task type's working set), which tells how
much of the policy's competence lives in the rules and how much in its weights.

A method that learns nothing (react, reflexion) acts at every iteration as at
iteration 0, so evaluate@i plays iteration 0's job and reuses its cached episodes
(`acting_iteration`); the metrics say so (`acts_as_iteration`).

Two baselines act differently here (jerp.methods): Reflexion retries each failed
game up to `reflexion.trials` times, each retry shown notes on the game's earlier
failed trials (policy/reflexion_trials.py; every trial in eval.jsonl; `success` is success@1,
the first attempt, as for every other method, and success@k is in `success_at`);
ExpeL shows the `expel.examples` successes most similar to the goal, drawn from the
train references and the wins up to iteration i (memory/examples.py).
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths, runners
from jerp.agents import policy_version, step_memory_for
from jerp.config import Params
from jerp.jobs import AgentSpec, Job, fingerprint, play_episodes, rank_states
from jerp.methods import parts
from jerp.metrics import expert_metrics, summarize
from jerp.metrics_schema import EvalMetrics, write_record
from jerp.policy.reflexion_trials import Note, play_trials, success_at
from jerp.policy.rollout import EpisodeSpec
from jerp.records import (
    ExpertStates,
    StateRank,
    Trajectory,
    first_trials,
    read_snapshot,
    read_tasks,
    read_trajectories,
    write_json,
    write_trajectories,
)


def acting_iteration(method: str, iteration: int) -> int:
    """The iteration whose policy and pool evaluate@ITERATION plays with: its own, or 0 for
    a method that learns nothing (its later adapters and pools are copies of iteration
    0's, which exist before any later one). Its episodes are then iteration 0's: the same
    job, so every chunk's key in the result store (runners.spread) is evaluate@0's and
    the second of the two evaluations reuses the first's episodes instead of playing."""
    return iteration if parts(method).learns else 0


def run(p: Params, root: Path, iteration: int) -> dict:
    tasks = read_tasks(root / paths.tasks_file()).tasks(p.env.eval_split)
    acting = acting_iteration(p.run.method, iteration)
    rules_file = root / paths.rules_file(acting)
    pool = read_snapshot(rules_file)
    method = parts(p.run.method)
    rules = rules_file if method.rules and pool.rules and p.rules.top_k else None
    examples = ((root / paths.references_file(), root / paths.wins_file(acting))
                if method.examples and p.expel.examples else ())
    adapter = root / paths.adapter_dir(acting)
    agent = AgentSpec(adapter, seed=p.run.seed)
    meta = dict(stage="eval", method=p.run.method, iteration=acting, seed=p.run.seed,
                policy_version=policy_version(adapter),
                pool_version=str(paths.rules_file(acting)) if rules else "none")

    step_memory = step_memory_for(p, pool)  # H2R's executor; None for other methods

    def play(specs: list[EpisodeSpec]) -> list[Trajectory]:
        trial = f" trial {specs[0].trial + 1}" if specs and specs[0].trial else ""
        return play_episodes(p, root, agent, specs, meta, rules,
                             desc=f"evaluate@{acting}{trial}", examples=examples,
                             step_memory=step_memory)

    specs = [EpisodeSpec(t) for t in tasks]
    if method.trials:
        trajs = play_trials(specs, play, note_reflector(p, root), p.reflexion.trials)
    else:
        trajs = play(specs)
    metrics = summarize(first_trials(trajs))  # success@1 for every method
    if method.trials:
        metrics["success_at"] = success_at(trajs, p.reflexion.trials)
        metrics["trial_episodes"] = len(trajs)
    metrics["iteration"] = iteration
    if acting != iteration:
        metrics["acts_as_iteration"] = acting  # honest: iteration 0's episodes, reused
    metrics["rules_in_pool"] = len(pool.rules)
    states: list[StateRank] = []
    if p.eval.expert_states and (root / paths.references_file()).exists():
        refs = [r for r in read_trajectories(root / paths.references_file())
                if r.split == p.env.eval_split]
        if (extra := root / paths.state_references_file()).exists():
            refs += read_trajectories(extra)  # eval games only ranked (stage `states`)
        job = Job(p, root, agent, rules, desc=f"expert states@{acting}", examples=examples,
                  step_memory=step_memory)
        states = rank_reference_states(job, refs)
        metrics.update(expert_metrics([s.model_dump() for s in states]))
    write_trajectories(root / paths.eval_file(iteration), trajs)
    write_json(root / paths.expert_states_file(iteration),
               ExpertStates(iteration=iteration, rows=states).model_dump())
    write_record(root / paths.metrics_file(iteration), EvalMetrics(**metrics))
    return metrics


def note_reflector(p: Params, root: Path) -> Note:
    """Reflexion's note on a failed trial (params reflexion.reflector): the deterministic
    milestone note, or the LLM of rules.llm_endpoint / rules.llm_model (its key is read
    where the client is made, never passed as an argument: llm.llm_generate)."""
    from jerp.envs.registry import action_abstraction
    from jerp.memory.reflect.reflexion import NOTE_SYSTEM, llm_note, milestone_note

    n = p.reflexion.max_note_chars
    if p.reflexion.reflector == "milestones":
        ax = action_abstraction(p.env.name)
        return lambda t: milestone_note(t, ax, n)
    from jerp.llm import llm_generate

    generate = llm_generate(p, root, NOTE_SYSTEM)
    return lambda t: llm_note(generate, t, n)


def wrong_types(types: list[str]) -> dict[str, str]:
    """Each task type's "wrong rules" donor: the next type in sorted order (none if alone)."""
    t = sorted(set(types))
    return {a: (t[(i + 1) % len(t)] if len(t) > 1 else "") for i, a in enumerate(t)}


def rank_reference_states(job: Job, refs: list[Trajectory]) -> list[StateRank]:
    """The reference action's rank at every reference state, spread over the workers."""
    p = job.params
    wrong = wrong_types([r.task_type for r in refs])
    ranges = runners.chunks(len(refs), runners.workers(p))
    key = fingerprint(job, [(r.task_id, len(r.steps)) for r in refs])
    parts_ = runners.spread(rank_states, [(job, refs[a:b], wrong) for a, b in ranges],
                            name=job.desc, size=len, threads=runners.threads(p), key=key)
    return [s for part in parts_ for s in part]
