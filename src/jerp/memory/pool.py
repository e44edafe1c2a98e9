"""Revising the rule pool: ADD, EDIT, UPVOTE, DOWNVOTE, MERGE on a snapshot.

Snapshots are immutable records of the pool after each iteration, so
`revise` is a pure function: it copies the previous snapshot, applies the
proposals in order, and returns the new snapshot plus every proposal
annotated as applied (`accepted=True`) or rejected (`accepted=False` with a
`reject_reason`). Proposals that arrive already rejected (by the parser) are
passed through untouched and never applied.

Score rule (ExpeL's counts):

- ADD creates a rule with score 2 (`ADD_SCORE`) at the proposal's level
  ("rule" for the flat pool; H2R's "planning" / "execution"). An ADD whose
  normalised text (lower case, punctuation and extra spaces removed) equals a
  rule of the same scope and level is applied as an UPVOTE of that rule instead, so repeated
  discoveries strengthen one rule rather than cloning it.
- UPVOTE adds 1; EDIT replaces the text and adds 1.
- DOWNVOTE subtracts 1, and 1 more (`DOWNVOTE_OVER_CAPACITY_DELTA`, 2 in
  all) when the pool is over capacity after the whole batch has been
  applied: as in ExpeL, a full pool makes the evidence against rules count
  more, so space is freed by the policy's votes rather than by a cut. The
  check is made after the batch, not at the downvote, so the penalty does
  not depend on whether the votes came before or after the batch's ADDs.
- MERGE replaces two or more rules by one new rule whose score is the sum of
  theirs, capped at `MERGE_SCORE_CAP` (10) so a merge cannot make a rule
  that no later evidence could remove. The new rule keeps the common scope
  and level of the merged rules (else "general" / "rule") and the union of
  their provenance.
- A rule whose score reaches 0 or below is removed at once; later proposals
  of the same batch that name it are rejected.

Capacity rule: if the pool still holds more than `capacity` rules after the
penalty, it is pruned to `capacity`. Old rules (from `prev`) go first:
lowest score, then least recently `updated`, then the newer id. A rule made
in this revision (by ADD or MERGE) is dropped only when the new rules alone
exceed capacity (lowest score, then the later proposal); otherwise a full
pool would discard every new ADD (score 2) in the step that accepted it and
stop following the policy. A proposal whose new rule is dropped is reported
`accepted=False` with `reject_reason` `PRUNED`, so the applied list always
agrees with the snapshot (for a MERGE, the rules it merged are gone too).

Each change sets the rule's `updated` to the iteration and appends the
evidence trajectory ids (failed, reference) to its provenance.
"""

from __future__ import annotations

import re

from jerp.records import Proposal, Rule, RuleSnapshot

ADD_SCORE = 2
UPVOTE_DELTA = 1
EDIT_DELTA = 1
DOWNVOTE_DELTA = 1
DOWNVOTE_OVER_CAPACITY_DELTA = 2
MERGE_SCORE_CAP = 10
PRUNED = "pruned: pool at capacity"


class Rejected(Exception):
    """A proposal that cannot be applied to the current pool (the reason is the message)."""


def empty_pool(capacity: int, iteration: int = 0) -> RuleSnapshot:
    """The pool before any reflection."""
    return RuleSnapshot(iteration=iteration, capacity=capacity, rules=[], next_id=1)


def rule_number(rule_id: str) -> int:
    """The n of "R<n>" (ids of another form sort last)."""
    m = re.fullmatch(r"R(\d+)", rule_id)
    return int(m.group(1)) if m else 1 << 30


def normalise(text: str) -> str:
    """Text as compared for duplicates: lower case, words only, single spaces."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _evidence_ids(p: Proposal) -> list[str]:
    return [t for t in (p.evidence.failed, p.evidence.reference) if t]


def _with_provenance(prov: list[str], new: list[str]) -> list[str]:
    return prov + [t for t in new if t not in prov]


class _Pool:
    """The mutable working copy `revise` edits; never escapes this module."""

    def __init__(self, prev: RuleSnapshot, iteration: int, capacity: int) -> None:
        self.rules: dict[str, Rule] = {r.id: r.model_copy(deep=True) for r in prev.rules}
        self.next_id = prev.next_id
        self.iteration = iteration
        self.capacity = capacity
        self.downvoted: list[str] = []  # one entry per applied DOWNVOTE

    def get(self, rule_id: str) -> Rule:
        if rule_id not in self.rules:
            raise Rejected(f"unknown rule id {rule_id!r}")
        return self.rules[rule_id]

    def touch(self, rule: Rule, p: Proposal, delta: int, text: str | None = None) -> str:
        rule.score += delta
        rule.updated = self.iteration
        rule.provenance = _with_provenance(rule.provenance, _evidence_ids(p))
        if text is not None:
            rule.text = text
        if rule.score <= 0:
            del self.rules[rule.id]
            return f"{rule.id} removed (score {rule.score})"
        return f"{rule.id} score {rule.score}"

    def new_rule(self, text: str, score: int, scope: str, level: str, prov: list[str]) -> Rule:
        rule = Rule(id=f"R{self.next_id}", text=text, score=score, scope=scope, level=level,
                    created=self.iteration, updated=self.iteration, provenance=prov)
        self.next_id += 1
        self.rules[rule.id] = rule
        return rule

    def duplicate_of(self, text: str, scope: str, level: str) -> Rule | None:
        key = normalise(text)
        for r in self.rules.values():
            if r.scope == scope and r.level == level and normalise(r.text) == key:
                return r
        return None

    def penalise_downvotes(self) -> None:
        """The over-capacity surcharge for each DOWNVOTE of the batch (see module doc)."""
        if len(self.rules) <= self.capacity:
            return
        for rule_id in self.downvoted:
            rule = self.rules.get(rule_id)
            if rule is None:
                continue
            rule.score -= DOWNVOTE_OVER_CAPACITY_DELTA - DOWNVOTE_DELTA
            if rule.score <= 0:
                del self.rules[rule_id]

    def prune(self, new: set[str]) -> list[str]:
        """Cut to capacity, old rules before the `new` ones (see module doc); the ids cut."""
        def drop_first(r: Rule) -> tuple[int, int, int, int]:
            n = rule_number(r.id)
            return (1, r.score, 0, -n) if r.id in new else (0, r.score, r.updated, -n)

        excess = len(self.rules) - max(self.capacity, 0)
        cut = [r.id for r in sorted(self.rules.values(), key=drop_first)[: max(excess, 0)]]
        for rule_id in cut:
            del self.rules[rule_id]
        return cut

    def snapshot(self) -> RuleSnapshot:
        rules = sorted(self.rules.values(), key=lambda r: rule_number(r.id))
        return RuleSnapshot(iteration=self.iteration, capacity=self.capacity, rules=rules,
                            next_id=self.next_id)


def _text(p: Proposal) -> str:
    text = (p.text or "").strip()
    if not text:
        raise Rejected(f"{p.op} needs a non-empty text")
    return text


def _one_id(p: Proposal) -> str:
    if len(p.rule_ids) != 1:
        raise Rejected(f"{p.op} needs exactly one rule id, got {p.rule_ids}")
    return p.rule_ids[0]


def _add(pool: _Pool, p: Proposal) -> str:
    text = _text(p)
    dup = pool.duplicate_of(text, p.scope, p.level)
    if dup is not None:
        return "duplicate text, applied as UPVOTE: " + pool.touch(dup, p, UPVOTE_DELTA)
    rule = pool.new_rule(text, ADD_SCORE, p.scope, p.level, _evidence_ids(p))
    return f"added {rule.id}"


def _edit(pool: _Pool, p: Proposal) -> str:
    rule, text = pool.get(_one_id(p)), _text(p)
    return "edited " + pool.touch(rule, p, EDIT_DELTA, text=text)


def _upvote(pool: _Pool, p: Proposal) -> str:
    return "upvoted " + pool.touch(pool.get(_one_id(p)), p, UPVOTE_DELTA)


def _downvote(pool: _Pool, p: Proposal) -> str:
    rule = pool.get(_one_id(p))
    pool.downvoted.append(rule.id)
    return "downvoted " + pool.touch(rule, p, -DOWNVOTE_DELTA)


def _merge(pool: _Pool, p: Proposal) -> str:
    ids = p.rule_ids
    if len(ids) < 2 or len(set(ids)) != len(ids):
        raise Rejected(f"MERGE needs two or more distinct rule ids, got {ids}")
    text = _text(p)
    old = [pool.get(i) for i in ids]
    scopes, levels = {r.scope for r in old}, {r.level for r in old}
    prov: list[str] = []
    for r in old:
        prov = _with_provenance(prov, r.provenance)
    prov = _with_provenance(prov, _evidence_ids(p))
    score = min(sum(r.score for r in old), MERGE_SCORE_CAP)
    for i in ids:
        del pool.rules[i]
    scope = scopes.pop() if len(scopes) == 1 else "general"
    level = levels.pop() if len(levels) == 1 else "rule"
    rule = pool.new_rule(text, score, scope, level, prov)
    return f"merged {','.join(ids)} into {rule.id}"


_APPLY = {"ADD": _add, "EDIT": _edit, "UPVOTE": _upvote, "DOWNVOTE": _downvote, "MERGE": _merge}


def _apply(pool: _Pool, p: Proposal) -> Proposal:
    if not p.accepted:
        return p.model_copy(deep=True)
    try:
        _APPLY[p.op](pool, p)
    except Rejected as e:
        return p.model_copy(deep=True, update={"accepted": False, "reject_reason": str(e)})
    return p.model_copy(deep=True, update={"accepted": True, "reject_reason": None})


def revise(
    prev: RuleSnapshot, proposals: list[Proposal], iteration: int, capacity: int
) -> tuple[RuleSnapshot, list[Proposal]]:
    """Apply `proposals` in order to a copy of `prev`; return the new snapshot and the
    proposals annotated as applied or rejected. `prev` is not modified."""
    pool = _Pool(prev, iteration, capacity)
    annotated: list[Proposal] = []
    made: dict[str, int] = {}  # id of each rule made in this revision -> its proposal
    for i, p in enumerate(proposals):
        first = pool.next_id
        annotated.append(_apply(pool, p))
        made.update({f"R{n}": i for n in range(first, pool.next_id)})
    pool.penalise_downvotes()
    for rule_id in pool.prune(set(made)):
        if rule_id in made:
            i = made[rule_id]
            annotated[i] = annotated[i].model_copy(
                update={"accepted": False, "reject_reason": PRUNED})
    return pool.snapshot(), annotated


def apply_log(prev: RuleSnapshot, proposals: list[Proposal]) -> list[str]:
    """A one-line description of what each proposal did, for logs (applies to a copy;
    without `revise`'s over-capacity surcharge and pruning, which follow the batch)."""
    pool = _Pool(prev, prev.iteration, prev.capacity)
    lines = []
    for p in proposals:
        if not p.accepted:
            lines.append(f"{p.op} rejected: {p.reject_reason}")
            continue
        try:
            lines.append(_APPLY[p.op](pool, p))
        except Rejected as e:
            lines.append(f"{p.op} rejected: {e}")
    return lines
