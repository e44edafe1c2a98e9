"""reflect@i: contrast iteration i's rollouts with reference successes; propose pool ops.

References are the environment's reference solutions for train tasks plus the
agent's own wins, which accumulate across iterations in wins.jsonl. ExpeL also
draws insights from the set of those successes per task type
(memory/reflect/successes.py); they come first within `rules.max_ops`.

The LLM reflector's API key is read from $OPENAI_API_KEY where the client is
made (jerp.policy.served.connect), and never passed as an argument: arguments
of Prefect tasks and flows may be recorded in Prefect's database, and params
reach MLflow.
"""

from __future__ import annotations

from pathlib import Path

from jerp import paths
from jerp.config import Params
from jerp.envs.actions import ActionAbstraction
from jerp.envs.registry import action_abstraction
from jerp.methods import parts
from jerp.records import (
    Proposal,
    read_snapshot,
    read_trajectories,
    write_proposals,
    write_trajectories,
)


def run(p: Params, root: Path, iteration: int, prev: int) -> list[Proposal]:
    # Every input is read before any output is written: a corrupt one changes nothing.
    rollouts = read_trajectories(root / paths.rollouts_file(iteration))
    wins = read_trajectories(root / paths.wins_file(prev))
    wins += [t for t in rollouts if t.won]
    rules = parts(p.run.method).rules
    if rules:
        pool = read_snapshot(root / paths.rules_file(prev))
        refs = [r for r in read_trajectories(root / paths.references_file())
                if r.split == "train"]
    write_trajectories(root / paths.wins_file(iteration), wins)
    if not rules:
        write_proposals(root / paths.proposals_file(iteration), [])
        return []
    refs += wins
    actions = action_abstraction(p.env.name)
    if parts(p.run.method).hierarchy:
        props = _reflect_hindsight(p, root, rollouts, refs, pool, actions)
    elif p.rules.reflector == "contrastive":
        from jerp.memory.reflect.contrastive import reflect_contrastive

        props = reflect_contrastive(rollouts, refs, pool, p.rules.max_ops, actions)
    else:
        props = _reflect_llm(p, root, rollouts, refs, pool, actions)
    if parts(p.run.method).success_insights:
        from jerp.memory.reflect.successes import reflect_successes

        new = {t.traj_id for t in rollouts if t.won}
        found = reflect_successes(refs, new, pool, actions, p.rules.max_rule_chars)
        props = within_budget(found + props, p.rules.max_ops)
    write_proposals(root / paths.proposals_file(iteration), props)
    return props


def _reflect_hindsight(p: Params, root: Path, rollouts, refs, pool,
                       actions: ActionAbstraction) -> list[Proposal]:
    """H2R's hindsight reflection: the same `reflector` switch picks its insight back end
    (contrastive: the offline one; llm: the same model or endpoint as the LLM reflector)."""
    from jerp.llm import llm_generate
    from jerp.memory.reflect.hindsight import reflect_hindsight, reflect_hindsight_llm
    from jerp.memory.reflect.llm import SYSTEM

    if p.rules.reflector == "contrastive":
        return reflect_hindsight(rollouts, refs, pool, p.rules.max_ops, actions)
    return reflect_hindsight_llm(llm_generate(p, root, SYSTEM), rollouts, refs, pool,
                                 p.rules.max_ops, actions, p.rules.max_rule_chars)


def within_budget(props: list[Proposal], max_ops: int) -> list[Proposal]:
    """The first `max_ops` accepted proposals, and every rejected one (kept as a record)."""
    out, n = [], 0
    for x in props:
        if x.accepted:
            if n >= max_ops:
                continue
            n += 1
        out.append(x)
    return out


def _reflect_llm(p: Params, root: Path, rollouts, refs, pool,
                 actions: ActionAbstraction) -> list[Proposal]:
    """One LLM call per failed rollout, against its closest real success (same task, else
    the most similar goal of the type); failures without one are skipped."""
    from jerp.llm import llm_generate
    from jerp.memory.reflect.llm import SYSTEM, closest_reference, reflect_llm

    generate = llm_generate(p, root, SYSTEM)
    props: list[Proposal] = []
    for t in rollouts:
        if t.won:
            continue
        ref = closest_reference(t, refs)
        if ref is None:
            continue
        budget = p.rules.max_ops - sum(x.accepted for x in props)
        if budget <= 0:
            break
        props += reflect_llm(generate, t, ref, pool, max_ops=budget,
                             max_chars=p.rules.max_rule_chars, abstraction=actions)
    return props
