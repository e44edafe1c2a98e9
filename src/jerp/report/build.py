"""Stage `report`: reports/index.md, a self-contained reports/index.html, PNG figures and
reports/iterations.csv (for `dvc plots`), from every evaluated iteration's outputs.

Sections: success with 95% Wilson intervals (overall and per task type) beside the
searching expert's success on the same games (the ceiling) and expert agreement,
the mean ± sd over seeds when other seeds of the same configuration were run,
expert agreement with walkthrough top-1 and MRR (secondary), who demonstrated the
train games (and the warm start's DAgger rounds), the three competence curves, the pool's size
and operations, training losses, the final pool's top rules, the rule
evolution, and the paired comparison of the first and last iterations. A
missing optional input gives a note in its section, never a failure.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from jerp import paths
from jerp.records import atomic_open
from jerp.report import plots
from jerp.report.analysis import (
    CEILING,
    MARKS,
    IterationSummary,
    ceiling,
    compare_iterations,
    competence_verdict,
    fmt_estimate,
    fmt_rate,
    headline,
    kind_totals,
    short_type,
    summarize,
)
from jerp.report.demos import demo_blocks
from jerp.report.document import Block, Figure, Heading, Table, Text, to_html, to_markdown
from jerp.report.evolution import PoolOps, evolution, top_rules
from jerp.report.load import (
    IterationData,
    References,
    load_iteration,
    load_references,
    load_run,
    workspace,
)

FIGURES = ("success.png", "expert.png", "competence.png", "pool.png", "training.png",
           "methods.png")


def _f(v, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def csv_rows(data: list[IterationData], rows: list[IterationSummary], ops: list[PoolOps],
             top: IterationSummary | None = None) -> list[dict]:
    """One flat row per iteration for `dvc plots` (empty cell: not recorded); the
    ceiling repeats on every row, a flat line beside success."""
    by_it = {o.iteration: o for o in ops}
    out = []
    for d, r in zip(data, rows, strict=True):
        o = by_it.get(d.iteration)
        a = r.agreement
        row = {"iteration": d.iteration, "success": r.success.value,
               "success_low": r.success.low, "success_high": r.success.high,
               "ceiling_success": top.success.value if top else None,
               "expert_agreement": a.value if a else None,
               "expert_agreement_low": a.low if a else None,
               "expert_agreement_high": a.high if a else None}
        for p in ("shown", "none", "wrong"):
            key = "expert_top1" if p == "shown" else f"expert_top1_{p}"
            t = r.top1.get(p)
            row[key] = t.value if t else None
            row[key + "_low"] = t.low if t else None
            row[key + "_high"] = t.high if t else None
        m = r.mrr.get("shown")
        row["expert_mrr"] = m.value if m else None
        row["rules"] = o.size if o else (d.metrics.rules_in_pool if d.metrics else None)
        for name in ("added", "edited", "merged", "removed"):
            row[f"rules_{name}"] = getattr(o, name) if o else None
        row["train_ce"] = d.train.ce_last if d.train else None
        row["train_pg"] = d.train.pg_last if d.train else None
        row["score"] = None if r.score is None else round(r.score.value, 2)
        out.append(row)
    return out


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return buf.getvalue()


def _retry_blocks(data: list[IterationData], seed: int) -> list[Block]:
    """Reflexion: success above is its first attempt (success@1, as every method's);
    after its retries, success@k, labelled with its k."""
    at_k = [summarize(d, seed, at_k=True) for d in data if d.metrics and d.metrics.trials > 1]
    return [Text("Success above is the first attempt (success@1). After Reflexion's retries: "
                 + "; ".join(f"iteration {r.iteration}: success@{r.trials} "
                             f"{fmt_rate(r.success)}" for r in at_k) + ".")] if at_k else []


def _success_blocks(rows: list[IterationSummary],
                    top: IterationSummary | None = None) -> list[Block]:
    """Success first: per iteration with its interval, expert agreement beside it, and
    the searching expert's ceiling on the same games as the last row."""
    types = sorted({t for r in rows for t in r.by_type})
    agree = any(r.agreement for r in rows)
    table = [[str(r.iteration), fmt_rate(r.success), *([fmt_rate(r.agreement)] if agree else []),
              *[fmt_rate(r.by_type.get(t)) for t in types]] for r in rows]
    if top is not None:
        table.append([CEILING, fmt_rate(top.success), *(["-"] if agree else []),
                      *[fmt_rate(top.by_type.get(t)) for t in types]])
    blocks: list[Block] = [
        Heading("Eval success"),
        Text(headline(rows, top)),
        Text("Success on the eval games, with the 95% Wilson interval (k won of n games)"
             + (f"; the last row, {CEILING}: the expert playing the same games at the "
                "run's step limit" if top else "")
             + ("; expert agreement: the share of the policy's own eval decisions equal to "
                "the searching expert's action at that state" if agree else "") + "."),
        Figure("success.png", "eval success per iteration with 95% Wilson intervals"),
        Table(["iteration", "success (95% CI)",
               *(["expert agreement (95% CI)"] if agree else []), *map(short_type, types)],
              table),
    ]
    if any(r.score is not None and abs(r.score.value - 100 * r.success.value) > 1e-6
           for r in rows):  # partial rewards (WebShop): the score says more than success
        blocks.insert(4, Text("Score (mean reward x 100, 95% bootstrap interval) per "
                              "iteration: " + ", ".join(
            f"{r.iteration}: {fmt_estimate(r.score)}" for r in rows) + "."))
    return blocks


def _expert_blocks(rows: list[IterationSummary]) -> list[Block]:
    head = Heading("Expert agreement and walkthrough top-1")
    if not any(r.top1 or r.agreement for r in rows):
        return [head, Text("Not recorded in this run (no expert_agreement nor expert_top1 in "
                           "metrics/iter_i.json).")]
    types = sorted({t for r in rows for t in r.top1_by_type})
    return [
        head,
        Text("Expert agreement (the headline proxy for success): the share of the policy's "
             "own eval decisions that equal the searching expert's action at the state the "
             "policy reached. Secondary: at each walkthrough state of an eval game the "
             "policy ranks the admissible commands; walkthrough top-1 is the share of "
             "states where the walkthrough action comes first, MRR the mean reciprocal rank "
             "of that action. Their 95% intervals resample whole games (a game's decisions "
             "and states are not independent), where the per-game counts are recorded; "
             "else agreement's is Wilson's over decisions."),
        Figure("expert.png", "expert agreement, walkthrough top-1 and MRR per iteration"),
        Table(["iteration", "expert agreement (95% CI)", "walkthrough top-1 (95% CI)",
               "MRR (95% CI)", *[f"top-1 {short_type(t)}" for t in types]],
              [[str(r.iteration), fmt_rate(r.agreement, 3), fmt_rate(r.top1.get("shown"), 3),
                _est(r.mrr.get("shown")), *[_f(r.top1_by_type.get(t)) for t in types]]
               for r in rows]),
        *_kind_blocks(rows),
    ]


def _kind_blocks(rows: list[IterationSummary], most: int = 4) -> list[Block]:
    """Expert agreement split by what the expert did: its `go to` search moves, whose
    order is its own, against handling the objects it found."""
    kinds = list(kind_totals([r.agreement_by_kind for r in rows]))
    if not kinds:
        return []
    shown, rest = kinds[:most], kinds[most:]

    def cell(pairs: list[tuple[int, int]]) -> str:
        a, n = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        return f"{a / n:.2f} ({a}/{n})" if n else "-"

    return [
        Text("Expert agreement by the kind of the expert's action (first attempts: agreeing "
             "/ labelled decisions). ALFWorld's expert searches receptacles in an order of "
             "its own, remembered over the episode: `go to` measures following that order, "
             "the other kinds handling the objects once found."),
        Table(["iteration", *[f"`{k}`" for k in shown], *(["other"] if rest else [])],
              [[str(r.iteration), *[cell([r.agreement_by_kind.get(k, (0, 0))]) for k in shown],
                *([cell([r.agreement_by_kind.get(k, (0, 0)) for k in rest])] if rest else [])]
               for r in rows]),
    ]


def _est(e) -> str:
    if e is None:
        return "-"
    return f"{e.value:.3f}" + ("" if e.low is None else f" ({e.low:.3f}-{e.high:.3f})")


def _competence_blocks(rows: list[IterationSummary],
                       states: dict | None = None) -> list[Block]:
    blocks: list[Block] = [
        Heading("Where the competence lives: rules vs weights"),
        Text("The same policy scores the reference states three ways: with the retrieved "
             "working set (the prompt it acts with), with no rules, and with the working set "
             "of another task type. " + competence_verdict(rows, states)),
        Figure("competence.png", "top-1 with the working set, no rules and wrong rules"),
    ]
    if any("none" in r.top1 for r in rows):
        blocks.append(Table(
            ["iteration", "with working set", "no rules", "wrong rules", "with - none"],
            [[str(r.iteration), *[fmt_rate(r.top1.get(p), 3) for p in ("shown", "none", "wrong")],
              _f(r.top1["shown"].value - r.top1["none"].value, "+.3f")
              if "shown" in r.top1 and "none" in r.top1 else "-"] for r in rows]))
    return blocks


def _pool_blocks(data: list[IterationData], ops: list[PoolOps]) -> list[Block]:
    blocks: list[Block] = [Heading("Rule pool")]
    if not ops:
        return blocks + [Text("No rule snapshots (data/iter_i/rules.json) in this run.")]
    blocks += [
        Text("Pool size after each revision and what the revision did (from consecutive "
             "snapshots; a merge turns two or more rules into one; removed: downvoted to 0 or "
             "pruned; rescored: same text, new score)."),
        Figure("pool.png", "rules in the pool and operations per iteration"),
        Table(["iteration", "rules", "added", "edited", "merged", "removed", "rescored"],
              [[str(o.iteration), str(o.size), str(o.added), str(o.edited), str(o.merged),
                str(o.removed), str(o.rescored)] for o in ops]),
    ]
    last = next((d for d in reversed(data) if d.snapshot is not None), None)
    if last is not None and last.snapshot.rules:
        blocks += [
            Heading(f"Top rules after iteration {last.iteration}", 3),
            Table(["id", "score", "scope", "age (iterations)", "trajectories", "rule"],
                  [[r.id, str(r.score), r.scope, str(r.age), str(r.trajectories), r.text]
                   for r in top_rules(last.snapshot)], left=(0, 2, 5)),
        ]
    elif last is not None:
        blocks.append(Text(f"The pool is empty after iteration {last.iteration}."))
    return blocks


def _training_blocks(data: list[IterationData]) -> list[Block]:
    blocks: list[Block] = [
        Heading("Policy updates"),
        Text("Adapter i is trained after rollout i (0: the warm start on reference successes). "
             "CE: candidate cross-entropy; PG: the GRPO term. A group whose episodes all get "
             "the same return has zero advantage: no RL signal. Rollout vs training: the share "
             "of decisions whose pi_old as recorded while acting and as training scores it, "
             "same weights, differ by more than the clip range (bf16 rounding); training "
             "uses its own (finetune.old_probs: recompute). Ratio dev.: the largest "
             "|importance ratio - 1| of the first batch, before any step (0 up to rounding "
             "with recompute); clipped: the share of ratios outside the clip range over the "
             "whole update."),
        Figure("training.png", "training loss per optimizer step"),
    ]
    if not any(d.train for d in data):
        return blocks + [Text("No training summaries (metrics/train_i.json) in this run.")]
    rows = []
    for d in data:
        t = d.train
        if t is None:
            rows.append([str(d.iteration), "-", *["-"] * 8,
                         _f(d.rollout.success if d.rollout else None, ".2f"), "-"])
            continue
        rows.append([str(d.iteration), t.kind, _f(t.ce_first), _f(t.ce_last),
                     _f(t.pg_first), _f(t.pg_last), _f(t.zero_advantage_group_share, ".2f"),
                     _f(t.rollout_ratio_out_of_clip, ".2f"),
                     _f(t.ratio_first_max_dev, ".2g"), _f(t.clip_fraction, ".2f"),
                     _f(d.rollout.success if d.rollout else None, ".2f"),
                     _f(t.seconds / 60 if t.seconds is not None else None, ".1f")])
    return blocks + [Table(["iteration", "update", "CE first", "CE last", "PG first", "PG last",
                            "zero-adv. groups", "rollout vs training (out of clip)",
                            "ratio dev. (1st batch)", "clipped",
                            "rollout success", "minutes"], rows, left=(0, 1))]


def _paired_blocks(data: list[IterationData], seed: int) -> list[Block]:
    blocks: list[Block] = [Heading("Did it learn? First vs last iteration, paired")]
    if len(data) < 2:
        return blocks + [Text("One evaluated iteration: nothing to compare.")]
    a, b = data[0], data[-1]
    results = compare_iterations(a, b, seed=seed)
    la, lb = f"iteration {a.iteration}", f"iteration {b.iteration}"
    if not results:
        return blocks + [Text("Per-game results (eval.jsonl) or per-state ranks "
                              "(expert_states.json) are missing, so no paired test.")]
    for r in results:
        blocks.append(Text(r.sentence(la, lb)))
    if not any(r.what.startswith("reference action") for r in results):
        blocks.append(Text("Per-state ranks (expert_states.json) were not recorded: no paired "
                           "test on reference-state accuracy."))
    return blocks


def table2_blocks(table: list[list[str]] | None, header: list[str] | None) -> list[Block]:
    if not table or not header:
        return []
    return [Heading("Methods compared (DVC experiments, last iteration)"),
            Figure("methods.png", "every method per iteration on the same games and states"),
            Table(header, table, left=(0, 1)),
            Text(f"The last three columns pair each run with the first row on the same "
                 f"games (success: exact McNemar; each game's expert agreement: paired "
                 f"bootstrap) and reference states (paired bootstrap): the difference, "
                 f"this run minus {table[0][1]}, its p-value, and {MARKS}."
                 + (f" The {CEILING} row: the searching expert playing the same eval games "
                    "at the run's step limit (the runs it was measured in)."
                    if any(r[0] == CEILING for r in table) else ""))]


def more_table_blocks(more: list[tuple[str, tuple[list[str], list[list[str]]]]]
                      ) -> list[Block]:
    """A Table II per other eval set (experiments.split_by_games), paired within it."""
    blocks: list[Block] = []
    for games, (header, table) in more:
        if table:
            blocks += [Heading(f"Methods compared on other games or states: {games}"),
                       Table(header, table, left=(0, 1)),
                       Text(f"Paired within this table, against {table[0][1]}; not comparable "
                            "with the tables above, which rank other reference states.")]
    return blocks


def seed_blocks(seeds: tuple[list[str], list[list[str]]] | None) -> list[Block]:
    """The seed-to-seed spread of this configuration (experiments.seed_curves)."""
    if not seeds or not seeds[1]:
        return []
    n = max(int(r[1]) for r in seeds[1])
    return [Heading(f"Over seeds ({n} runs that differ only in run.seed)"),
            Text("Mean ± sample standard deviation over the seeds (`make seeds`); the "
                 "sections above show this workspace's seed alone."),
            Table(*seeds)]


def document(data: list[IterationData], title: str, seed: int = 0,
             table2: tuple[list[str], list[list[str]]] | None = None,
             seeds: tuple[list[str], list[list[str]]] | None = None,
             more: list | None = None, learned: list[IterationData] | None = None,
             refs: References | None = None,
             ) -> tuple[list[Block], list[IterationSummary], list[PoolOps]]:
    """`data`: the evaluated iterations; `learned`: every iteration (default: `data`), whose
    snapshots and training summaries the pool and training sections show; `refs`: the
    run's metrics/references.json (the ceiling and the demonstrations), None if absent."""
    learned = data if learned is None else learned
    rows = [summarize(d, seed) for d in data]
    top = ceiling(refs, seed)
    snaps = [d.snapshot for d in learned if d.snapshot is not None]
    ops = evolution(snaps, {d.iteration: d.proposals for d in learned})
    blocks: list[Block] = [Heading(title, 1)]
    blocks += _success_blocks(rows, top) + _retry_blocks(data, seed)
    blocks += seed_blocks(seeds)
    blocks += _expert_blocks(rows)
    blocks += demo_blocks(refs, next((d.train for d in learned if d.iteration == 0), None))
    blocks += _competence_blocks(rows, {d.iteration: d.states for d in data if d.states})
    blocks += _paired_blocks(data, seed)
    blocks += _pool_blocks(learned, ops)
    blocks += _training_blocks(learned)
    if table2:
        blocks += table2_blocks(table2[1], table2[0])
    blocks += more_table_blocks(more or [])
    return blocks, rows, ops


def figures(data: list[IterationData], rows: list[IterationSummary], ops: list[PoolOps],
            title: str, curves: list | None = None, top: IterationSummary | None = None
            ) -> dict[str, bytes]:
    """`data`: every learned iteration (its training summaries); `rows`: the evaluated ones;
    `top`: the searching expert's ceiling."""
    return {
        "success.png": plots.success(rows, title, top),
        "expert.png": plots.expert(rows),
        "competence.png": plots.competence(rows),
        "pool.png": plots.pool(ops),
        "training.png": plots.training({d.iteration: d.train for d in data if d.train}),
        "methods.png": plots.methods(curves or []),
    }


def build(root: Path, iterations: list[int], title: str, seed: int = 0,
          table2: tuple[list[str], list[list[str]]] | None = None,
          seeds: tuple[list[str], list[list[str]]] | None = None,
          curves: list | None = None, more: list | None = None,
          learned: list[int] | None = None) -> list[dict]:
    """Write the report under root/reports; returns the CSV rows (one per evaluated
    iteration). `learned`: every iteration of the run (default: `iterations`, the evaluated
    ones), for the pool and training sections. table2, seeds, curves
    (experiments.method_curves) and more (a Table II per other eval set) come from other
    runs."""
    read = workspace(root)
    data = load_run(read, iterations)
    # the evaluated iterations are loaded once; only the others are read without metrics
    have = {d.iteration: d for d in data}
    history = ([have.get(i) or load_iteration(read, i, evaluated=False) for i in learned]
               if learned else data)
    refs = load_references(read)
    blocks, rows, ops = document(data, title, seed, table2, seeds, more, history, refs)
    top = ceiling(refs, seed)
    images = figures(history, rows, ops, title, curves, top)
    out = root / paths.REPORTS
    table = csv_rows(data, rows, ops, top)
    for name, png in images.items():
        with atomic_open(out / name, "wb") as fh:
            fh.write(png)
    with atomic_open(out / "iterations.csv") as fh:
        fh.write(_csv_text(table))
    with atomic_open(out / "index.md") as fh:
        fh.write(to_markdown(blocks))
    with atomic_open(out / "index.html") as fh:
        fh.write(to_html(blocks, title, images))
    return table
