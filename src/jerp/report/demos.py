"""The report's "Demonstrations" section: what the warm start and RFT imitate.

Who demonstrated each train game (the searching expert, or the walkthrough where the
expert could not win it), the expert's wins and steps per task type, from
metrics/references.json, and the warm start's DAgger rounds (metrics/train_0.json):
how the policy did on the games it was then taught the expert's labels on.
"""

from __future__ import annotations

from jerp.metrics_schema import DaggerRound, DemoStats, TrainRecord
from jerp.report.analysis import Rate, fmt_rate, short_type
from jerp.report.document import Block, Heading, Table, Text
from jerp.report.load import References


def _f(v, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def demo_blocks(refs: References | None, warmstart: TrainRecord | None) -> list[Block]:
    """The section; a note where the run predates metrics/references.json."""
    blocks: list[Block] = [Heading("Demonstrations")]
    demos = refs.demos if refs else None
    if not demos:
        blocks.append(Text("Not recorded in this run (no metrics/references.json: a run "
                           "older than the references' statistics)."))
    else:
        blocks += _demo_summary(demos)
    return blocks + dagger_blocks((warmstart.dagger if warmstart else None) or [])


def _demo_summary(demos: DemoStats) -> list[Block]:
    by = demos.by
    text = (f"{demos.games} train games, demonstrations asked of the "
            f"{demos.asked}: {by.get('expert', 0)} by the searching expert, "
            f"{by.get('walkthrough', 0)} by the walkthrough")
    if demos.fallbacks is not None:
        text += f" ({demos.fallbacks} fallbacks where the expert did not win)"
    text += f"; {demos.won} of them won, in {_f(demos.mean_steps)} steps on average."
    blocks: list[Block] = [Text(text)]
    types = demos.expert_by_type or {}
    if types:
        blocks.append(Table(
            ["task type", "games", "expert won (95% CI)", "expert mean steps"],
            [[short_type(t), str(v.games),
              fmt_rate(Rate.of(v.expert_won, v.games) if v.games else None),
              _f(v.expert_mean_steps, ".1f")] for t, v in types.items()]))
    return blocks


def dagger_blocks(rounds: list[DaggerRound]) -> list[Block]:
    """One row per DAgger round of the warm start; nothing when it ran none."""
    if not rounds:
        return []
    rows = []
    for r in rounds:
        rows.append([str(r.round), _f(r.games, "d"),
                     fmt_rate(Rate.of(r.won, r.games)) if r.games else "-",
                     _f(r.labels, "d"), fmt_rate(_agreement(r.expert_agreement, r.labels), 3),
                     _f(r.ce_first, ".3f"), _f(r.ce_last, ".3f")])
    return [Heading("Warm start: DAgger rounds", 3),
            Text("After imitating the references, the policy played the warm-start games "
                 "(greedy) and was trained on the searching expert's action at every state "
                 "it reached. Won and expert agreement: how it played those games before the "
                 "round's update; CE: the round's training loss."),
            Table(["round", "games", "won (95% CI)", "expert labels", "expert agreement",
                   "CE first", "CE last"], rows)]


def _agreement(value: float | None, labels: int | None) -> Rate | None:
    """A round's expert agreement, with its Wilson interval when the labels are counted."""
    if value is None:
        return None
    return Rate.of(round(value * labels), labels) if labels else Rate(value)
