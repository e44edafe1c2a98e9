"""Tuning on valid_seen: design choices measured on games the results never come from.

How the policy reads a state, `policy.score` (sum, mean, calibrated) and
`policy.history` (steps of history in the prompt), is chosen here on walkthrough
reference states of valid_seen games (split `eval_in`), so valid_unseen (`eval_out`,
where every result is reported) is never looked at to choose them. One scoring pass
per history gives all three scorings: the conditional scores are the same and only
the value the candidate softmax ranks by differs. Top-1's 95% interval resamples
games, since states of one game are correlated.

    .venv/bin/jerp tune --adapter data/iter_0/adapter --history 1 3 5 --json tuning.json

Reference states only ask what the policy does where the walkthrough went, an oracle
plan that never searches. `--episodes` plays episodes on the same games instead, one
set per history, and measures what the results report: success (paired against the
configured choice, exact McNemar) and expert agreement on the states the policy
reaches (interval over resampled games). It costs an evaluation per choice.
`--avoid-repeats` also plays each history with `policy.avoid_repeats` flipped, and
`--temperatures` the configured history at other acting temperatures (decision rules
for episodes: reference-state ranking sees neither). Why temperature: a greedy policy
repeats itself wherever a state repeats, and the weak warm starts that win 0-1 of 12
eval games greedily win about half of their sampled (T = 1) rollouts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from jerp.config import Params, parse_params
from jerp.envs.base import Observation, Task
from jerp.envs.registry import data_root, sample_split
from jerp.jobs import AgentSpec, Job, agent, play_episodes
from jerp.policy.prompts import EpisodeContext
from jerp.policy.rollout import EpisodeSpec
from jerp.policy.scoring import SCORINGS, candidate_values, rank_of
from jerp.records import RuleSnapshot, Trajectory
from jerp.replay import REPLAY_LIMIT, play_references
from jerp.stats import bootstrap_mean, discordant, mcnemar_p, wilson

TUNING_SPLIT = "eval_in"  # valid_seen
SEED_OFFSET = 3  # train games use run.seed, the warm start +1, the state games +2


@dataclass(frozen=True)
class Cell:
    """One choice's reference-state figures: top-1 with its game-resampled interval."""

    history: int
    score: str
    top1: float
    low: float
    high: float
    mrr: float
    states: int
    games: int


@dataclass
class Tuning:
    """What `jerp tune` measured, as written to its JSON."""

    split: str
    adapter: str
    games: list[str]
    configured: dict  # the params file's policy.history and policy.score
    cells: list[Cell]

    def best(self) -> Cell:
        """The choice with the highest top-1 (MRR breaks ties)."""
        return max(self.cells, key=lambda c: (c.top1, c.mrr))

    def table(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows): a row per choice, the configured one and the best marked."""
        best, conf = self.best(), (self.configured["history"], self.configured["score"])
        rows = [[str(c.history), c.score, f"{c.top1:.3f} ({c.low:.3f}-{c.high:.3f})",
                 f"{c.mrr:.3f}", str(c.states), str(c.games),
                 " ".join(m for m, on in (("best", c == best),
                                          ("configured", (c.history, c.score) == conf)) if on)]
                for c in self.cells]
        return ["history", "score", "top-1 (95% CI, games resampled)", "MRR", "states",
                "games", ""], rows


def tuning_games(p: Params, root: Path, per_type: int) -> list[Task]:
    """valid_seen games drawn by seed; refused when the run reports on valid_seen itself."""
    if p.env.eval_split == TUNING_SPLIT:
        raise ValueError(f"env.eval_split is {TUNING_SPLIT!r}, the tuning split: choices tuned "
                         "there would be judged on the games they were tuned on; report on "
                         "eval_out (valid_unseen) to tune on eval_in")
    return sample_split(p.env, data_root(p.env, os.environ, root), TUNING_SPLIT,
                        p.run.seed + SEED_OFFSET, per_type=per_type)


def rank_rows(job: Job, refs: list[Trajectory]) -> list[dict]:
    """Per reference state: {"task_id", "rank": {scoring: 1-based rank of the reference
    action}}, from one scoring pass of the job's agent (no rules shown)."""
    ag = agent(job)
    rows = []
    for ref in refs:
        ctx = EpisodeContext(env=ref.env, goal=ref.goal, rules=[],
                             initial=ref.initial_observation)
        for s in ref.steps:
            if s.admissible and s.action in s.admissible:
                ob = Observation(s.observation, s.admissible, ref.goal, ref.task_type)
                scores, lengths = ag.scores(ctx, ob)
                u = ag.unconditional(ref.env, s.admissible)
                rows.append({"task_id": ref.task_id, "rank": {
                    how: rank_of(candidate_values(scores, lengths, how, u),
                                 s.admissible.index(s.action)) for how in SCORINGS}})
            ctx.history.append((s.observation, s.action))
        ag.release(ctx)
    return rows


def grid_cells(rows_by_history: dict[int, list[dict]], seed: int = 0) -> list[Cell]:
    """A cell per (history, scoring) from `rank_rows`' rows: top-1, its interval over
    resampled games, and MRR."""
    cells = []
    for h, rows in sorted(rows_by_history.items()):
        if not rows:
            raise ValueError(f"history {h}: no reference states to rank")
        games = [r["task_id"] for r in rows]
        for how in SCORINGS:
            ranks = [r["rank"][how] for r in rows]
            top1, low, high = bootstrap_mean([float(k == 1) for k in ranks], seed=seed,
                                             clusters=games)
            cells.append(Cell(h, how, round(top1, 4), round(low, 4), round(high, 4),
                              round(sum(1 / k for k in ranks) / len(ranks), 4), len(ranks),
                              len(set(games))))
    return cells


def tune(p: Params, root: Path, adapter: Path | None, histories: list[int],
         per_type: int) -> Tuning:
    """Replay the tuning games' walkthroughs, rank their states for every history."""
    games = tuning_games(p, root, per_type)
    refs = [r for r in play_references(p, root, [(t, "walkthrough", REPLAY_LIMIT)
                                                 for t in games], "replay tuning games")
            if r.won]
    if not refs:
        raise ValueError(f"no walkthrough of the {len(games)} tuning games replayed to a win")
    rows = {}
    for h in histories:
        q = p.model_copy(update={"policy": p.policy.model_copy(update={"history": h})})
        rows[h] = rank_rows(Job(q, root, AgentSpec(adapter, seed=p.run.seed)), refs)
    return Tuning(split=TUNING_SPLIT, adapter=str(adapter or "none"),
                  games=[r.task_id for r in refs],
                  configured={"history": p.policy.history, "score": p.policy.score},
                  cells=grid_cells(rows, seed=p.run.seed))


@dataclass(frozen=True, order=True)
class Choice:
    """What one set of tuning episodes was played with (policy.history, avoid_repeats
    and temperature)."""

    history: int
    avoid_repeats: bool = False
    temperature: float = 0.0

    def __str__(self) -> str:
        return ", ".join([str(self.history)] + ["avoid repeats"] * self.avoid_repeats
                         + [f"T = {self.temperature:g}"] * (self.temperature > 0))


@dataclass(frozen=True)
class EpisodeCell:
    """One choice's episodes: success with its Wilson interval, expert agreement
    with its interval over resampled games, and the games won only here and only with
    the configured choice (exact McNemar p; None for the configured choice itself)."""

    history: int
    avoid_repeats: bool
    temperature: float
    won: int
    games: int
    low: float
    high: float
    agreement: float | None
    agreement_low: float | None
    agreement_high: float | None
    mean_steps: float
    only_here: int | None
    only_configured: int | None
    p: float | None


@dataclass
class EpisodeTuning:
    """What `jerp tune --episodes` measured, as written to its JSON."""

    split: str
    adapter: str
    max_steps: int
    games: list[str]
    configured: Choice  # the params file's policy.history, avoid_repeats and temperature
    cells: list[EpisodeCell]

    def best(self) -> EpisodeCell:
        """The choice with the most games won (expert agreement breaks ties)."""
        return max(self.cells, key=lambda c: (c.won, c.agreement or 0.0))

    def table(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows): a row per choice, the configured one and the best marked."""
        best = self.best()

        def vs(c: EpisodeCell) -> str:
            return ("-" if c.p is None else
                    f"+{c.only_here} / -{c.only_configured}, p = {c.p:.3g}")

        def agree(c: EpisodeCell) -> str:
            return ("-" if c.agreement is None else
                    f"{c.agreement:.3f} ({c.agreement_low:.3f}-{c.agreement_high:.3f})")

        rows = [[str(choice_of(c)), f"{c.won}/{c.games} ({c.low:.2f}-{c.high:.2f})",
                 agree(c), f"{c.mean_steps:.1f}", vs(c),
                 " ".join(m for m, on in (("best", c == best),
                                          ("configured", choice_of(c) == self.configured))
                          if on)]
                for c in self.cells]
        return ["choice (history, ...)", "success (95% CI)",
                "expert agreement (95% CI, games resampled)", "mean steps",
                "vs configured (games won only here / only there, McNemar)", ""], rows


def choice_of(c: EpisodeCell) -> Choice:
    return Choice(c.history, c.avoid_repeats, c.temperature)


def episode_cells(trajs_by_choice: dict[Choice, list[Trajectory]], configured: Choice,
                  seed: int = 0) -> list[EpisodeCell]:
    """A cell per choice from its episodes, one per game in the same game order for
    every choice (paired), the configured choice among them."""
    if configured not in trajs_by_choice:
        raise ValueError(f"the configured choice (history {configured}) was not played: "
                         "pairing needs it (played: "
                         f"{'; '.join(map(str, sorted(trajs_by_choice)))})")
    order = [t.task_id for t in trajs_by_choice[configured]]
    base = [t.won for t in trajs_by_choice[configured]]
    cells = []
    for choice, trajs in sorted(trajs_by_choice.items()):
        if [t.task_id for t in trajs] != order:
            raise ValueError(f"history {choice}: its episodes are not the configured choice's "
                             "games in the same order, so they cannot be paired")
        won = [t.won for t in trajs]
        labelled = [(t.task_id, float(s.action == s.expert)) for t in trajs for s in t.steps
                    if s.expert is not None]
        agree = (bootstrap_mean([v for _, v in labelled], seed=seed,
                                clusters=[g for g, _ in labelled]) if labelled
                 else (None, None, None))
        b, c = discordant(won, base)
        mine = choice == configured
        cells.append(EpisodeCell(
            choice.history, choice.avoid_repeats, choice.temperature, sum(won), len(won),
            *(round(x, 4) for x in wilson(sum(won), len(won))),
            *(None if x is None else round(x, 4) for x in agree),
            round(sum(t.n_steps for t in trajs) / max(len(trajs), 1), 2),
            None if mine else b, None if mine else c,
            None if mine else round(mcnemar_p(b, c), 4)))
    return cells


def params_for(p: Params, choice: Choice) -> Params:
    """`p` acting by `choice`, validated by the schema (`model_copy` does not validate, so
    a negative history or temperature would otherwise reach the agent)."""
    return parse_params({**p.model_dump(), "policy": {
        **p.policy.model_dump(), "history": choice.history,
        "avoid_repeats": choice.avoid_repeats, "temperature": choice.temperature}})


def tune_episodes(p: Params, root: Path, adapter: Path | None, histories: list[int],
                  per_type: int, avoid_repeats: bool = False,
                  temperatures: list[float] | None = None) -> EpisodeTuning:
    """Play the tuning games once per history (the configured one added when missing:
    the others are paired against it), with `avoid_repeats` once more per history with
    policy.avoid_repeats flipped, and once per temperature with the configured history
    and avoid_repeats (sampling seeded by run.seed); no rules shown: an empty pool, as
    at iteration 0 (H2R's executor still tracks subgoals)."""
    from jerp.agents import policy_version, step_memory_for
    empty = RuleSnapshot.empty(p.rules.capacity)

    pol = p.policy
    configured = Choice(pol.history, pol.avoid_repeats, pol.temperature)
    avoids = {pol.avoid_repeats, *((not pol.avoid_repeats,) if avoid_repeats else ())}
    choices = sorted({*(Choice(h, a, pol.temperature) for h in {*histories, pol.history}
                        for a in avoids),
                      *(Choice(pol.history, pol.avoid_repeats, x) for x in temperatures or [])})
    variants = {c: params_for(p, c) for c in choices}  # a bad choice stops before any game
    games = tuning_games(p, root, per_type)
    if not games:
        raise ValueError("no valid_seen games to play: check env.task_types")
    played = {}
    for c in choices:
        q = variants[c]
        meta = dict(stage="tune", method=p.run.method, seed=p.run.seed,
                    policy_version=policy_version(adapter), pool_version="none")
        played[c] = play_episodes(q, root, AgentSpec(adapter, seed=p.run.seed),
                                  [EpisodeSpec(t) for t in games], meta, None,
                                  desc=f"tune history {c}", step_memory=step_memory_for(q, empty))
    return EpisodeTuning(split=TUNING_SPLIT, adapter=str(adapter or "none"),
                         max_steps=p.env.max_steps, games=[t.task_id for t in games],
                         configured=configured,
                         cells=episode_cells(played, configured, seed=p.run.seed))
