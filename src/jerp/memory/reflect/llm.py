"""The LLM reflector: a prompt, a model call, and the strict grammar's parser.

The model only ever proposes; `grammar.parse_operations` decides what is a
valid operation, and `pool.revise` decides what it does to the pool. The
prompt shows the pool (ids, scores, scopes), one failed rollout, one
reference success, and where the contrastive alignment says they diverge,
so even a small model has the key step in front of it.

The reference is the closest real success (`closest_reference`): won with the
full reward (458 of WebShop's 6,910 scripted purchases score below 1.0 and must
not be shown as a success), on the same task if there is one, else the same task
type with the most similar goal (rapidfuzz token-set ratio), then the shortest.

The model call is a plain `generate(prompt) -> text` callable: a local model
(jerp.llm.local_generate) or a served one (jerp.policy.served, the
client the served policy uses too), both made at the edges.
"""

from __future__ import annotations

from collections.abc import Callable

from rapidfuzz import fuzz

from jerp.envs.actions import ActionAbstraction
from jerp.memory.base import really_won
from jerp.memory.reflect.contrastive import find_divergence
from jerp.memory.reflect.grammar import GRAMMAR, parse_operations
from jerp.records import Evidence, Proposal, RuleSnapshot, Trajectory

Generate = Callable[[str], str]

SYSTEM = ("You maintain a pool of short, general rules that help an agent act in a text "
          "world. You answer only with pool operations in the required grammar.")


def closest_reference(failed: Trajectory, references: list[Trajectory]) -> Trajectory | None:
    """The real success closest to `failed` (module docstring): same task first, else the
    same task type by goal similarity; ties: fewer actions, then trajectory id."""
    wins = [r for r in references if really_won(r) and r.traj_id != failed.traj_id]
    pool = [r for r in wins if r.task_id == failed.task_id] or [
        r for r in wins if r.task_type == failed.task_type]
    return min(pool, default=None, key=lambda r: (
        -fuzz.token_set_ratio(failed.goal.lower(), r.goal.lower()), len(r.actions), r.traj_id))


def render_pool(pool: RuleSnapshot, scope: str) -> str:
    rules = [r for r in pool.rules if r.scope in (scope, "general")]
    if not rules:
        return "(the pool is empty)"
    return "\n".join(f"{r.id} [score {r.score}, {r.scope}] {r.text}" for r in rules)


def render_trajectory(t: Trajectory, max_steps: int = 40, obs_chars: int = 120) -> str:
    outcome = "SUCCESS" if t.won else f"FAILURE (reward {t.reward:g})"
    lines = [f"Goal: {t.goal}", f"Outcome: {outcome} after {len(t.steps)} steps"]
    for i, s in enumerate(t.steps[:max_steps]):
        obs = " ".join(s.observation.split())[:obs_chars]
        lines.append(f"{i}. > {s.action}" + (f"  [{obs}]" if obs else ""))
    if len(t.steps) > max_steps:
        lines.append(f"... ({len(t.steps) - max_steps} more steps)")
    return "\n".join(lines)


def build_prompt(failed: Trajectory, reference: Trajectory | None, pool: RuleSnapshot,
                 max_ops: int, max_steps: int = 40,
                 abstraction: ActionAbstraction | None = None) -> str:
    """The reflector prompt: task, pool, both trajectories, divergence hint, grammar."""
    rules = render_pool(pool, failed.task_type)
    parts = [f"Task type: {failed.task_type}",
             f"Current rules (for this task type and general):\n{rules}",
             f"FAILED attempt:\n{render_trajectory(failed, max_steps)}"]
    if reference is not None:
        parts.append(f"SUCCESSFUL reference:\n{render_trajectory(reference, max_steps)}")
        d = find_divergence(failed, reference, abstraction)
        if d is not None:
            parts.append(f"The attempts part at failed step {d.failed_step} / reference step "
                         f"{d.ref_step} ('{reference.actions[d.ref_step]}').")
    parts.append(f"Propose at most {max_ops} operations that would have prevented the failure."
                 f"\n{GRAMMAR}")
    return "\n\n".join(parts)


def reflect_llm(
    generate: Generate,
    failed: Trajectory,
    reference: Trajectory | None,
    pool: RuleSnapshot,
    *,
    max_ops: int,
    max_chars: int,
    max_downvotes: int = 2,
    abstraction: ActionAbstraction | None = None,
) -> list[Proposal]:
    """Ask the model, parse its answer; accepted proposals first, then the rejected ones.
    `reference` must be a real success (`really_won`): the prompt calls it one."""
    if reference is not None and not really_won(reference):
        raise ValueError(f"reference {reference.traj_id} did not win (won={reference.won}, "
                         f"reward {reference.reward:g}); a reference must win with reward 1")
    prompt = build_prompt(failed, reference, pool, max_ops, abstraction=abstraction)
    answer = generate(prompt)
    d = find_divergence(failed, reference, abstraction) if reference is not None else None
    evidence = Evidence(failed=failed.traj_id, reference=reference.traj_id if reference else None,
                        diverge_step=d.failed_step if d else None)
    accepted, rejected = parse_operations(
        answer, pool, max_ops, max_chars, max_downvotes=max_downvotes, scope=failed.task_type,
        evidence=evidence, rationale="llm reflection")
    return accepted + rejected
