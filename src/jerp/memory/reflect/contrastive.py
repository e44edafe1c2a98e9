"""The deterministic contrastive reflector (the offline default).

A 135M policy cannot write useful rules, but a failed rollout and a success
on the same task (or task type) say a lot by themselves: align the two
action sequences, find where they part, and state what the success did
there. The algorithm, per failed rollout:

1. Pick a reference success: same task if there is one, else same task type;
   the shortest, ties by trajectory id. Wins in the batch count as references.
2. Abstract both sequences with the environment's action abstraction
   (`envs/actions.py`: roles and types instead of instance names; instance
   identities, such as WebShop's product, only when both play the same goal) and
   align them with difflib's matching blocks.
3. Find the divergence, preferring the key milestone the failure missed:
   a. the first state-changing action of the reference (counted with
      multiplicity, so the second "take" of a pick-two task counts) that never
      occurs in the failure;
   b. else the first reference milestone at which the failure's sequence of
      milestones departs from the reference's (a milestone done out of order);
   c. else the first aligned step where the two differ.
4. Write the rule around it: the reference's previous milestone as context,
   the navigation step leading to it when it goes to the tool or destination,
   and the next milestone as the deadline ("After you take the target object,
   go to a microwave and heat it with the microwave before you put it in the
   target receptacle."). Scope = the task type.

Rules found by several failures become one proposal (its rationale lists
them). A rule whose meaning is already in the pool (same normalised text or
difflib ratio >= `SIMILARITY`) is UPVOTEd instead of ADDed. Rules shown to
rollouts (Trajectory.rules_shown) are voted on: UPVOTE when more successes
than failures followed their advice, DOWNVOTE when more failures did
(`envs.actions.followed`, a check of the milestone verbs the rule asks for).
Votes, DOWNVOTEs first, lead the list and keep up to half of `max_ops`, so
findings cannot crowd them out.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from jerp.envs.actions import Act, ActionAbstraction, followed, generic
from jerp.envs.registry import action_abstraction
from jerp.memory.pool import normalise
from jerp.records import Evidence, Proposal, Rule, RuleSnapshot, Trajectory

SIMILARITY = 0.85


@dataclass(frozen=True)
class Divergence:
    """Where a failed rollout leaves its reference, and the rule that says so."""

    kind: str  # "missing" | "order" | "different"
    ref_step: int  # index of the reference action the rule is about
    failed_step: int  # index in the failed rollout where it departs
    text: str


# ---------------------------------------------------------------- rule language


def with_pronoun(phrase: str, obj: str) -> str:
    """Refer to an object already named in the sentence as 'it' (first occurrence only)."""
    return phrase.replace(obj, "it", 1) if obj else phrase


def second_mention(phrase: str, first: str) -> str:
    """After 'go to a microwave', say 'the microwave' in the same sentence."""
    if first.startswith(("a ", "an ")):
        return phrase.replace(first, re.sub(r"^an? ", "the ", first))
    return phrase.replace(f" in {first}", " there")


# ---------------------------------------------------------------- reference choice


def pick_reference(failed: Trajectory, references: list[Trajectory]) -> Trajectory | None:
    """A success on the same task, else the same task type; shortest first."""
    wins = [r for r in references if r.won and r.actions and r.traj_id != failed.traj_id]
    same_task = [r for r in wins if r.task_id == failed.task_id]
    pool = same_task or [r for r in wins if r.task_type == failed.task_type]
    return min(pool, key=lambda r: (len(r.actions), r.traj_id), default=None)


# ---------------------------------------------------------------- divergence


def _missing_milestone(ref: list[Act], failed: list[Act]) -> int | None:
    """First reference milestone whose k-th occurrence never happens in the failure."""
    have: dict[str, int] = defaultdict(int)
    for a in failed:
        have[a.key] += a.is_milestone
    seen: dict[str, int] = defaultdict(int)
    for i, a in enumerate(ref):
        if a.is_milestone:
            seen[a.key] += 1
            if seen[a.key] > have[a.key]:
                return i
    return None


def _out_of_order_milestone(ref: list[Act], failed: list[Act]) -> int | None:
    """First reference milestone where the failure's milestone sequence departs from it."""
    r_idx = [i for i, a in enumerate(ref) if a.is_milestone]
    f_keys = [a.key for a in failed if a.is_milestone]
    for n, i in enumerate(r_idx):
        if n >= len(f_keys) or f_keys[n] != ref[i].key:
            return i
    return None


def _aligned_position(opcodes: list[tuple], ref_step: int) -> int:
    """Index in the failed sequence that the alignment puts at `ref_step`."""
    for tag, i1, i2, j1, _j2 in opcodes:
        if i1 <= ref_step < i2:
            return j1 + (ref_step - i1) if tag == "equal" else j1
    return opcodes[-1][4] if opcodes else 0


def _first_difference(opcodes: list[tuple], n_ref: int, n_failed: int) -> tuple[int, int] | None:
    for tag, i1, _i2, j1, _j2 in opcodes:
        if tag != "equal" and i1 < n_ref and j1 < n_failed:
            return i1, j1
    return None


def _milestones_around(ref: list[Act], step: int) -> tuple[Act | None, Act | None]:
    before = [a for a in ref[:step] if a.is_milestone]
    after = [a for a in ref[step + 1:] if a.is_milestone and a.key != ref[step].key]
    return (before[-1] if before else None), (after[0] if after else None)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def milestone_rule(ref: list[Act], step: int, ax: ActionAbstraction) -> str:
    """Advice to do the reference's milestone `step`, placed between its neighbours."""
    act = ref[step]
    main = ax.phrase(act)
    occurrence = sum(a.key == act.key for a in ref[: step + 1])
    if act.verb == "take" and occurrence > 1:
        main = f"find and take another {re.sub(r'^(?:the|an?) ', '', act.args[0])}"
    nav = ref[step - 1] if step > 0 else None
    if act.verb != "take" and nav and nav.verb == "go to" and nav.args[0] in act.args[1:]:
        main = f"go to {nav.args[0]} and " + second_mention(main, nav.args[0])
    prev, nxt = _milestones_around(ref, step)
    obj = act.args[0] if act.args else ""
    if prev is not None and prev.args and prev.args[0] == obj:
        main = with_pronoun(main, obj)
    head = f"after you {ax.short_phrase(prev)}, {main}" if prev else main
    tail = f" before you {with_pronoun(ax.short_phrase(nxt), obj)}" if nxt else ""
    return _sentence(head + tail)


def difference_rule(ref: list[Act], failed: list[Act], i: int, j: int,
                    ax: ActionAbstraction) -> str:
    """Advice for a plain step difference: do what the reference did, not what failed."""
    prev, _ = _milestones_around(ref, i)
    do, dont = ax.phrase(ref[i]), ax.phrase(failed[j])
    repeats = sum(a.align_key == failed[j].align_key for a in failed)
    if repeats >= 3:
        body = f"do not keep repeating '{dont}' when it changes nothing; {do} instead"
    else:
        body = f"{do} rather than {dont}"
    return _sentence(f"after you {ax.short_phrase(prev)}, {body}" if prev else body)


def _abstraction(t: Trajectory, given: ActionAbstraction | None) -> ActionAbstraction:
    return given if given is not None else action_abstraction(t.env)


def find_divergence(failed: Trajectory, reference: Trajectory,
                    abstraction: ActionAbstraction | None = None) -> Divergence | None:
    """Where `failed` leaves `reference` (see the module docstring), with its rule.
    `abstraction`: the env's (default: that of the failure's `env`)."""
    ax = _abstraction(failed, abstraction)
    f_acts = ax.abstract(failed.actions, failed.goal)
    r_acts = ax.abstract(reference.actions, reference.goal)
    if (failed.task_id, failed.goal) != (reference.task_id, reference.goal):
        f_acts, r_acts = generic(f_acts), generic(r_acts)  # identities differ across goals
    opcodes = SequenceMatcher(None, [a.align_key for a in r_acts],
                              [a.align_key for a in f_acts], autojunk=False).get_opcodes()
    for kind, finder in (("missing", _missing_milestone), ("order", _out_of_order_milestone)):
        step = finder(r_acts, f_acts)
        if step is not None:
            return Divergence(kind, step, _aligned_position(opcodes, step),
                              milestone_rule(r_acts, step, ax))
    diff = _first_difference(opcodes, len(r_acts), len(f_acts))
    if diff is None:
        return None
    i, j = diff
    return Divergence("different", i, j, difference_rule(r_acts, f_acts, i, j, ax))


# ---------------------------------------------------------------- proposals


@dataclass
class _Finding:
    text: str
    scope: str
    evidence: Evidence
    kind: str
    failed_ids: list[str] = field(default_factory=list)


def similar_rule(pool: RuleSnapshot, text: str, scope: str) -> Rule | None:
    """A rule of the same meaning in the scope (or general): equal or near-equal text."""
    key, best, best_ratio = normalise(text), None, SIMILARITY
    for rule in pool.rules:
        if rule.scope not in (scope, "general"):
            continue
        ratio = 1.0 if normalise(rule.text) == key else SequenceMatcher(
            None, normalise(rule.text), key).ratio()
        if ratio >= best_ratio:
            best, best_ratio = rule, ratio
    return best


def _findings(rollouts: list[Trajectory], references: list[Trajectory],
              abstraction: ActionAbstraction | None) -> list[_Finding]:
    refs = references + [t for t in rollouts if t.won]
    groups: dict[tuple[str, str], _Finding] = {}
    for failed in (t for t in rollouts if not t.won):
        ref = pick_reference(failed, refs)
        d = find_divergence(failed, ref, abstraction) if ref else None
        if d is None:
            continue
        key = (normalise(d.text), failed.task_type)
        if key not in groups:
            ev = Evidence(failed=failed.traj_id, reference=ref.traj_id,
                          diverge_step=d.failed_step)
            groups[key] = _Finding(d.text, failed.task_type, ev, d.kind)
        groups[key].failed_ids.append(failed.traj_id)
    return sorted(groups.values(), key=lambda g: -len(g.failed_ids))


def _finding_proposal(f: _Finding, pool: RuleSnapshot) -> Proposal:
    why = (f"{f.kind} milestone" if f.kind != "different" else "first differing step")
    rationale = (f"contrastive: {why} at failed step {f.evidence.diverge_step} vs reference "
                 f"{f.evidence.reference}; failures: {', '.join(f.failed_ids)}")
    same = similar_rule(pool, f.text, f.scope)
    if same is not None:
        return Proposal(op="UPVOTE", rule_ids=[same.id], scope=f.scope, evidence=f.evidence,
                        rationale=rationale + f"; same meaning as {same.id}")
    return Proposal(op="ADD", text=f.text, scope=f.scope, evidence=f.evidence,
                    rationale=rationale)


def _shown_rule_votes(rollouts: list[Trajectory], pool: RuleSnapshot, skip: set[str],
                      abstraction: ActionAbstraction | None) -> list[Proposal]:
    """UPVOTE rules successes followed, DOWNVOTE rules failures followed while shown."""
    rules = {r.id: r for r in pool.rules}
    ups: dict[str, list[str]] = defaultdict(list)
    downs: dict[str, list[str]] = defaultdict(list)
    for t in rollouts:
        ax = _abstraction(t, abstraction)
        acts = ax.abstract(t.actions, t.goal)
        for shown in t.rules_shown:
            rule = rules.get(shown.id)
            if rule is None or rule.id in skip or not followed(rule.text, acts, ax):
                continue
            (ups if t.won else downs)[rule.id].append(t.traj_id)
    votes = []
    for rid in sorted(set(ups) | set(downs), key=lambda i: (rules[i].score, i)):
        up, down = ups[rid], downs[rid]
        if len(up) == len(down):
            continue
        op = "UPVOTE" if len(up) > len(down) else "DOWNVOTE"
        ev = Evidence(reference=up[0]) if op == "UPVOTE" else Evidence(failed=down[0])
        votes.append(Proposal(op=op, rule_ids=[rid], scope=rules[rid].scope, evidence=ev,
                              rationale=f"shown and followed by {len(up)} successes "
                                        f"({', '.join(up)}) and {len(down)} failures "
                                        f"({', '.join(down)})"))
    return votes


def reflect_contrastive(
    rollouts: list[Trajectory], references: list[Trajectory], pool: RuleSnapshot, max_ops: int,
    abstraction: ActionAbstraction | None = None,
) -> list[Proposal]:
    """Proposals (at most `max_ops`) from contrasting failures with reference successes.
    `abstraction`: the env's action abstraction (default: each trajectory's env's)."""
    found = [_finding_proposal(f, pool) for f in _findings(rollouts, references, abstraction)]
    upvoted = {p.rule_ids[0] for p in found if p.op == "UPVOTE"}
    unique: list[Proposal] = []
    for p in found:  # two findings may match the same existing rule: vote once
        if p.op == "ADD" or p.rule_ids[0] not in {q.rule_ids[0] for q in unique if q.rule_ids}:
            unique.append(p)
    # Votes come first and may take up to half the budget (all of it that the findings
    # leave): a DOWNVOTE is the only way a rule leaves the pool, and votes appended after
    # the findings were the first cut whenever the findings filled `max_ops`. DOWNVOTEs
    # precede UPVOTEs; the findings keep the other half so discovery does not stall.
    votes = sorted(_shown_rule_votes(rollouts, pool, upvoted, abstraction),
                   key=lambda p: p.op != "DOWNVOTE")
    budget = max(max_ops, 0)
    n_votes = min(len(votes), max(budget - len(unique), (budget + 1) // 2))
    return votes[:n_votes] + unique[: budget - n_votes]
