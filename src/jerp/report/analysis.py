"""What the report says, computed from plain per-iteration data (no I/O, no plotting).

- success per iteration (overall and per task type) as k/n with 95% Wilson
  intervals: counted from the eval games when recorded, else from the metrics;
  beside it the searching expert's success on the same games (the ceiling) and
  expert agreement (the policy's own decisions equal to the expert's action at
  that state), the second headline figure;
- reference-state accuracy (the reference action ranked first) and mean
  reciprocal rank, under the prompt the method acts with ("shown") and, for
  methods that show rules, with no rules ("none") and another task type's
  rules ("wrong");
- every interval over units inside games (agreement's decisions, top-1's and
  MRR's states) resamples whole games: the units of one game are correlated, and
  a Wilson interval over them would be too narrow;
- the competence verdict: did the with-rules minus no-rules gap shrink?
  (JERP's claim: stable behaviours move from the pool into the weights);
- the paired comparison of two iterations (or runs) on the same games and
  states: exact McNemar on success, paired bootstrap on each game's expert
  agreement, on the steps of the games both won, and on state accuracy that
  resamples games (each state's task id),
  with the number of pairs (games, for states) that would make the observed
  difference significant.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from jerp import stats
from jerp.metrics_schema import PROMPTS, EpisodeSummary, EvalMetrics
from jerp.records import StateRank
from jerp.report.load import EvalGame, IterationData, References

ALPHA = stats.ALPHA
HOLM = "\N{DAGGER}"
NEEDED_CAP = 100_000  # pairs needed beyond this: the difference is as good as zero
MARKS = (f"* where significant at the 5% level, {HOLM} where still so after Holm's "
         "correction across all the paired differences of the table; agreement and "
         "reference states are resampled by game")


@dataclass
class Rate:
    """k successes of n with the Wilson interval (k, n None: only the rate is known)."""

    value: float
    k: int | None = None
    n: int | None = None
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        lo, hi = stats.wilson(k, n)
        return cls(k / n if n else 0.0, k, n, lo, hi)

    @classmethod
    def clustered(cls, hits: list[bool], games: list[Hashable], seed: int = 0) -> Rate:
        """k of n units (states, decisions) with a percentile interval that resamples whole
        games: one game's units are not independent, so Wilson over units is too narrow."""
        _, lo, hi = stats.bootstrap_mean([float(h) for h in hits], seed=seed, clusters=games)
        return cls(sum(hits) / len(hits), sum(hits), len(hits), lo, hi)


def fmt_rate(r: Rate | None, digits: int = 2) -> str:
    """'0.36 (0.26-0.47)', with k/n when counted: '3/12 = 0.25 (0.09-0.53)'."""
    if r is None:
        return "-"
    head = f"{r.k}/{r.n} = {r.value:.{digits}f}" if r.k is not None else f"{r.value:.{digits}f}"
    if r.low is None:
        return head
    return f"{head} ({r.low:.{digits}f}-{r.high:.{digits}f})"


@dataclass
class Estimate:
    """A mean with an optional interval."""

    value: float
    low: float | None = None
    high: float | None = None


def fmt_p(p: float) -> str:
    """A bootstrap p of 0 only says no resample crossed zero: below its resolution."""
    floor = 2 / stats.RESAMPLES
    return f"p < {floor:.2g}" if p < floor else f"p = {p:.2g}"


def fmt_estimate(e: Estimate | None, digits: int = 1) -> str:
    """'42.5 (30.0-55.0)', or the bare value when no interval is known."""
    if e is None:
        return "-"
    ci = f" ({e.low:.{digits}f}-{e.high:.{digits}f})" if e.low is not None else ""
    return f"{e.value:.{digits}f}{ci}"


@dataclass
class IterationSummary:
    iteration: int
    success: Rate
    by_type: dict[str, Rate]
    top1: dict[str, Rate] = field(default_factory=dict)  # prompt -> reference action 1st
    mrr: dict[str, Estimate] = field(default_factory=dict)
    top1_by_type: dict[str, float] = field(default_factory=dict)
    mrr_by_type: dict[str, float] = field(default_factory=dict)
    score: Estimate | None = None  # mean reward x 100 (the WebShop score), bootstrap CI
    trials: int = 1  # k of `success` when it is Reflexion's success@k; 1: the first attempt
    agreement: Rate | None = None  # policy's decisions = the searching expert's
    # (agreeing, labelled) first-attempt decisions per kind of the expert's action
    agreement_by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)


SHORT_TYPES = {"pick_and_place_simple": "put", "pick_clean_then_place_in_recep": "clean",
               "pick_heat_then_place_in_recep": "heat", "pick_cool_then_place_in_recep": "cool",
               "look_at_obj_in_light": "examine", "pick_two_obj_and_place": "puttwo"}


def short_type(task_type: str) -> str:
    """pick_heat_then_place_in_recep -> heat: the column names of the JERP paper's Table II
    (other environments' types are short already)."""
    return SHORT_TYPES.get(task_type, task_type)


def _success(games: list[EvalGame] | None, m: EvalMetrics | None, at_k: bool = False
             ) -> tuple[Rate, dict[str, Rate]]:
    if games:
        types = sorted({g.task_type for g in games})
        by_type = {t: Rate.of(sum(g.won for g in games if g.task_type == t),
                              sum(1 for g in games if g.task_type == t)) for t in types}
        return Rate.of(sum(g.won for g in games), len(games)), by_type
    if m is None:
        return Rate(0.0), {}
    n = m.episodes
    rate = m.success_at_k if at_k else m.success_at_1
    overall = Rate.of(round(rate * n), n) if n else _rate(rate, m.success_ci)
    return overall, {t: Rate(float(v)) for t, v in sorted(m.success_by_type.items())}


def _rate(value: float, ci: list | None, n: int | None = None) -> Rate:
    """A recorded rate with its recorded interval; k counted back when n is known."""
    k = round(value * n) if n else None
    low, high = (float(ci[0]), float(ci[1])) if ci else (None, None)
    if low is None and k is not None:
        low, high = stats.wilson(k, n)
    return Rate(value, k, n or None, low, high)


def _agreement(games: list[EvalGame] | None, m: EpisodeSummary | None, seed: int
               ) -> Rate | None:
    """Expert agreement over the eval games' labelled decisions, its interval resampling
    games; from the metrics (Wilson over decisions) where per-game counts are missing.
    None: not recorded (an older run)."""
    hits: list[bool] = []
    owners: list[str] = []
    for g in games or []:
        agree, labelled = game_agreement(g)
        hits += [True] * agree + [False] * (labelled - agree)
        owners += [g.task_id] * labelled
    if hits:
        return Rate.clustered(hits, owners, seed)
    if m is None or m.expert_agreement is None:
        return None
    n = m.expert_labels
    return _rate(m.expert_agreement, m.expert_agreement_ci, n or None)


def game_agreement(g: EvalGame) -> tuple[int, int]:
    """(decisions equal to the expert's, decisions it labelled) in one game."""
    return (sum(a for a, _ in g.agreement.values()), sum(n for _, n in g.agreement.values()))


def _expert(states: list[StateRank] | None, m: EvalMetrics | None, seed: int
            ) -> tuple[dict[str, Rate], dict[str, Estimate]]:
    top1: dict[str, Rate] = {}
    mrr: dict[str, Estimate] = {}
    if states:
        for p in PROMPTS:
            ranks = [s.rank[p] for s in states if p in s.rank]
            if len(ranks) == len(states):
                games = [s.task_id for s in states]
                top1[p] = Rate.clustered([r == 1 for r in ranks], games, seed)
                mrr[p] = Estimate(*stats.bootstrap_mean([1 / r for r in ranks], seed=seed,
                                                        clusters=games))
        return top1, mrr
    for p in PROMPTS if m is not None else ():
        if (v := m.top1(p)) is not None:
            top1[p] = Rate(v)
        if (v := m.mrr(p)) is not None:
            mrr[p] = Estimate(v)
    return top1, mrr


def summarize(d: IterationData, seed: int = 0, at_k: bool = False) -> IterationSummary:
    """`at_k`: success after Reflexion's retries (success@k, its last trial) instead of
    every method's first attempt (success@1); the same for methods that do not retry."""
    m = d.metrics
    games = d.final_games if at_k and d.final_games else d.games
    success, by_type = _success(games, m, at_k)
    top1, mrr = _expert(d.states, m, seed)
    score = m.score if m is not None else None
    if d.games:
        score = Estimate(*(100 * v for v in stats.bootstrap_mean(
            [g.reward for g in d.games], seed=seed)))
    elif score is not None:
        score = Estimate(float(score))
    return IterationSummary(
        iteration=d.iteration, success=success, by_type=by_type, top1=top1, mrr=mrr,
        top1_by_type=dict(m.expert_top1_by_type or {}) if m is not None else {},
        mrr_by_type=dict(m.expert_mrr_by_type or {}) if m is not None else {},
        score=score, agreement=_agreement(d.games, m, seed),
        trials=m.trials if at_k and m is not None else 1,
        agreement_by_kind=kind_totals([g.agreement for g in d.games or []]),
    )


def kind_totals(counts: list[dict[str, tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """(agreeing, labelled) per kind of the expert's action summed over games or
    iterations, most labelled first."""
    tot: dict[str, list[int]] = {}
    for c in counts:
        for k, (a, n) in c.items():
            t = tot.setdefault(k, [0, 0])
            t[0] += a
            t[1] += n
    return {k: (a, n) for k, (a, n) in sorted(tot.items(), key=lambda kv: (-kv[1][1], kv[0]))}


CEILING = "searching expert (ceiling)"


def ceiling(refs: References | None, seed: int = 0) -> IterationSummary | None:
    """The searching expert's success on the eval games at the run's step limit, as an
    iteration (-1) without expert agreement (the expert agrees with itself)."""
    if refs is None or not refs.ceiling:
        return None
    m = EvalMetrics(**refs.ceiling.model_dump(), iteration=-1, rules_in_pool=0)
    s = summarize(IterationData(-1, m, games=refs.ceiling_games), seed)
    s.agreement = None
    return s


def headline(rows: list[IterationSummary], top: IterationSummary | None) -> str:
    """The last iteration's success and expert agreement, beside the ceiling."""
    last = rows[-1]
    text = f"Iteration {last.iteration}: eval success {fmt_rate(last.success)}"
    if top is not None:
        text += f"; the {CEILING} {fmt_rate(top.success)} on the same games"
    if last.agreement is not None:
        text += (f"; expert agreement (its decisions equal to the expert's) "
                 f"{fmt_rate(last.agreement)}, games resampled")
    return text + " (95% intervals; success: Wilson)."


# ---------------------------------------------------------------- competence


def competence_verdict(rows: list[IterationSummary],
                       states: dict[int, list[StateRank]] | None = None, seed: int = 0) -> str:
    """Where the competence lives, whether the rules' share shrank, and (with the
    per-state ranks) whether that change is beyond noise: a paired bootstrap over the
    states (resampling their games) of the change in each state's with-minus-none
    difference."""
    gaps = [(r.iteration, r.top1["shown"].value - r.top1["none"].value) for r in rows
            if "shown" in r.top1 and "none" in r.top1]
    if not gaps:
        new_run = any(r.mrr for r in rows)  # runs that record MRR also score the 3 prompts
        if new_run and any("shown" in r.top1 for r in rows):
            return ("This method shows no rules: only the accuracy with the prompt it acts "
                    "with is measured, so there is no with-rules minus no-rules gap.")
        if any("shown" in r.top1 for r in rows):
            return ("Accuracy with no rules and with wrong rules was not recorded in this run "
                    "(an older run): no competence curves.")
        return "Reference-state accuracy was not recorded in this run."
    (i0, g0), (i1, g1) = gaps[0], gaps[-1]
    if len(gaps) == 1:
        return (f"With the working set the policy ranks the reference action first "
                f"{g0:+.3f} more often than with no rules (iteration {i0}); one iteration "
                "measured, so no trend yet.")
    if g0 <= 0 and g1 <= 0:  # nothing in the rules to move into the weights
        trend = ("was not positive at either: the rules did not help at the first or the "
                 "last iteration, so there is no competence in them to move")
    elif g1 < g0:
        trend = "shrank: competence moved from the rules into the weights, as JERP claims"
    elif g1 > g0:
        trend = "grew: the policy leans more on its rules than before"
    else:
        trend = "did not change"
    text = (f"The with-rules minus no-rules gap in top-1 went from {g0:+.3f} (iteration {i0}) "
            f"to {g1:+.3f} (iteration {i1}): it {trend}")
    change = _gap_change(states.get(i0), states.get(i1), seed) if states else None
    if change is None:
        return text + "."
    lo, hi, p = change["low"], change["high"], change["p"]
    verdict = ("a change beyond noise" if p < ALPHA else
               "within noise on these states, so not yet evidence either way")
    return (f"{text}; the change is {change['diff']:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, "
            f"paired bootstrap over {change['n']} states of {change['games']} games, "
            f"games resampled, {fmt_p(p)}): {verdict}.")


def _gap_change(a: list[StateRank] | None, b: list[StateRank] | None, seed: int
                ) -> dict | None:
    def gaps(states):
        return {(s.task_id, s.step): float(s.rank["shown"] == 1) - float(s.rank["none"] == 1)
                for s in states or [] if "shown" in s.rank and "none" in s.rank}

    ga, gb = gaps(a), gaps(b)
    keys = sorted(set(ga) & set(gb))
    games = [task_id for task_id, _ in keys]
    if len(set(games)) < 2:
        return None
    out = stats.paired_bootstrap([ga[k] for k in keys], [gb[k] for k in keys], seed=seed,
                                 clusters=games)
    return {**out, "n": len(keys), "games": len(set(games))}


# ---------------------------------------------------------------- paired comparison


@dataclass
class PairedResult:
    """A paired test of B against A on the items both evaluated."""

    what: str
    unit: str  # what was paired: "games" or "reference states"
    pairs: int
    a: float
    b: float
    diff: float
    p: float
    low: float | None = None
    high: float | None = None
    b_only: int | None = None  # McNemar: discordant pairs won by A only
    c_only: int | None = None  # ... and by B only
    needed: int | None = None  # pairs that would make this difference significant
    games: int | None = None  # states paired: the games resampled (and `needed` counts)

    @property
    def significant(self) -> bool:
        return self.p < ALPHA

    def sentence(self, label_a: str, label_b: str) -> str:
        verdict = "significant" if self.significant else "not significant"
        ci = "" if self.low is None else f", 95% CI {self.low:+.3f} to {self.high:+.3f}"
        of = "" if self.games is None else f" of {self.games} games (games resampled)"
        head = (f"{self.what}: {label_a} {self.a:.3f} vs {label_b} {self.b:.3f} on the same "
                f"{self.pairs} {self.unit}{of} ({label_b} minus {label_a}: "
                f"{self.diff:+.3f}{ci}, "
                f"{fmt_p(self.p)}): "
                f"{verdict} at the 5% level")
        if self.significant:
            return head + "."
        if self.needed is None:
            return head + "; the difference is zero, so no number of pairs would make it so."
        unit = self.unit if self.games is None else "games"
        if self.needed > NEEDED_CAP:
            return head + (f"; more than {NEEDED_CAP:,} paired {unit} would be needed to "
                           "make a difference this small significant (alpha 0.05, power 0.8).")
        return head + (f"; about {self.needed} paired {unit} would make a difference "
                       "this size significant (alpha 0.05, power 0.8).")


def paired_success(a: list[EvalGame], b: list[EvalGame]) -> PairedResult | None:
    """Exact McNemar on the games both runs played (matched by task id)."""
    wa = {g.task_id: g.won for g in a}
    wb = {g.task_id: g.won for g in b}
    ids = sorted(set(wa) & set(wb))
    if not ids:
        return None
    xa, xb = [wa[i] for i in ids], [wb[i] for i in ids]
    bb, cc = stats.discordant(xa, xb)
    n = len(ids)
    return PairedResult(
        what="eval success (exact McNemar)", unit="games", pairs=n, a=sum(xa) / n, b=sum(xb) / n,
        diff=(sum(xb) - sum(xa)) / n, p=stats.mcnemar_p(bb, cc), b_only=bb, c_only=cc,
        needed=stats.pairs_needed_mcnemar(bb, cc, n),
    )


@dataclass(frozen=True)
class TypeSplit:
    """Two evaluations' wins on the games of one task type both played."""

    task_type: str
    games: int
    won_a: int
    won_b: int
    only_a: int  # games A won and B lost
    only_b: int


def success_by_type(a: list[EvalGame], b: list[EvalGame]) -> list[TypeSplit]:
    """Where a paired success difference comes from: per task type (in order of first
    appearance in A), then "all", on the games both played (matched by task id)."""
    wb = {g.task_id: g.won for g in b}
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    for g in a:
        if g.task_id in wb:
            pairs.setdefault(g.task_type, []).append((g.won, wb[g.task_id]))
    pairs["all"] = [x for v in list(pairs.values()) for x in v]

    def split(task_type: str, xs: list[tuple[bool, bool]]) -> TypeSplit:
        only_a, only_b = stats.discordant([x for x, _ in xs], [y for _, y in xs])
        return TypeSplit(task_type, len(xs), sum(x for x, _ in xs), sum(y for _, y in xs),
                         only_a, only_b)

    return [split(t, xs) for t, xs in pairs.items()] if pairs["all"] else []


def paired_agreement(a: list[EvalGame], b: list[EvalGame], seed: int = 0
                     ) -> PairedResult | None:
    """Paired bootstrap on each game's expert agreement (its decisions equal to the
    expert's over those labelled), on the games both runs played with labels. The
    decisions themselves are not paired: two policies reach different states, so the
    game is the unit."""
    def shares(games: list[EvalGame]) -> dict[str, float]:
        counts = {g.task_id: game_agreement(g) for g in games}
        return {t: k / n for t, (k, n) in counts.items() if n}

    return _paired_bootstrap("expert agreement per game (paired bootstrap)", "games",
                             shares(a), shares(b), seed)


def paired_steps(a: list[EvalGame], b: list[EvalGame], seed: int = 0) -> PairedResult | None:
    """Paired bootstrap on the steps a win took, on the games both runs won: a policy
    that wins the same games sooner has learnt something success cannot show. Conditioned
    on both winning, so it says nothing of the games either lost."""
    def steps(games: list[EvalGame]) -> dict[str, float]:
        return {g.task_id: float(g.steps) for g in games if g.won and g.steps is not None}

    return _paired_bootstrap("steps to a win, on the games both won (paired bootstrap)",
                             "games", steps(a), steps(b), seed)


def paired_states(a: list[StateRank], b: list[StateRank], prompt: str = "shown",
                  seed: int = 0) -> PairedResult | None:
    """Paired bootstrap on reference-state top-1, states matched by (task id, step) and
    resampled by game (task id): the states of one game are not independent."""
    return _paired_bootstrap(
        "reference action ranked 1st (paired bootstrap)", "reference states",
        {(s.task_id, s.step): float(s.rank[prompt] == 1) for s in a if prompt in s.rank},
        {(s.task_id, s.step): float(s.rank[prompt] == 1) for s in b if prompt in s.rank}, seed,
        game=lambda key: key[0])


def paired_score(a: list[EvalGame], b: list[EvalGame], seed: int = 0) -> PairedResult | None:
    """Paired bootstrap on the score (mean reward x 100) of the games both runs played."""
    return _paired_bootstrap("score, mean reward x 100 (paired bootstrap)", "games",
                             {g.task_id: 100 * g.reward for g in a},
                             {g.task_id: 100 * g.reward for g in b}, seed)


def _paired_bootstrap(what: str, unit: str, ra: dict, rb: dict, seed: int,
                      game: Callable[[Hashable], Hashable] | None = None
                      ) -> PairedResult | None:
    """The values of `ra` and `rb` paired by key; `game(key)`: the game a pair belongs to,
    whole games resampled (and `needed` counted in games). None under two pairs (games)."""
    keys = sorted(set(ra) & set(rb))
    games = None if game is None else [game(k) for k in keys]
    if len(set(keys if games is None else games)) < 2:
        return None
    xa, xb = [ra[k] for k in keys], [rb[k] for k in keys]
    boot = stats.paired_bootstrap(xa, xb, seed=seed, clusters=games)
    diffs = [y - x for x, y in zip(xa, xb, strict=True)]
    if games is not None:  # the mean difference of each game: the units that are resampled
        sums, counts = stats.cluster_sums(np.asarray(diffs, dtype=float), games)
        diffs = list(sums / counts)
    return PairedResult(
        what=what, unit=unit, pairs=len(keys), a=sum(xa) / len(keys), b=sum(xb) / len(keys),
        diff=boot["diff"], p=boot["p"], low=boot["low"], high=boot["high"],
        needed=stats.pairs_needed(diffs), games=None if games is None else len(set(games)),
    )


def compare_iterations(a: IterationData, b: IterationData, seed: int = 0
                       ) -> list[PairedResult]:
    out = []
    if a.games and b.games and (r := paired_success(a.games, b.games)):
        out.append(r)
    if a.games and b.games and (r := paired_agreement(a.games, b.games, seed=seed)):
        out.append(r)
    if a.games and b.games and (r := paired_steps(a.games, b.games, seed=seed)):
        out.append(r)
    partial = any(0 < g.reward < 1 for g in (*a.games, *b.games)) if a.games and b.games else False
    if partial and (r := paired_score(a.games, b.games, seed=seed)):
        out.append(r)  # WebShop: rewards between 0 and 1 carry more than success
    if a.states and b.states and (r := paired_states(a.states, b.states, seed=seed)):
        out.append(r)
    return out
