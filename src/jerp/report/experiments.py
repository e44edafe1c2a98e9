"""Runs side by side: two runs' curves and paired tests, and the JERP paper's Table II.

A run is a git revision or DVC experiment name (or `workspace`), read through
dvc.api (`load.revision`), so nothing is checked out. Two runs of different
methods on the same seed play the same eval games and reference states, so
their last iterations are compared pairwise (exact McNemar on success, paired
bootstrap on reference-state top-1). Table II has methods as rows, success
per task type and overall at the last evaluated iteration, then expert
agreement and (walkthrough) expert top-1 (and the WebShop score where the run
is on WebShop); runs that differ only in run.seed (`make seeds`) share a row
with the mean ± sd over their seeds. Success is every method's first attempt
(success@1); `at_k` counts Reflexion after its retries instead (success@k, the
cell labelled with its k), in the cells and the paired test. The paired
differences are many tests at once: each is marked where it survives Holm's
correction across the table (analysis.MARKS). The searching expert's success on
the same eval games (metrics/references.json) closes the table as the ceiling row.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from jerp import stats
from jerp.report.analysis import (
    CEILING,
    HOLM,
    IterationSummary,
    PairedResult,
    Rate,
    ceiling,
    compare_iterations,
    fmt_estimate,
    fmt_p,
    fmt_rate,
    short_type,
    summarize,
)
from jerp.report.load import (
    IterationData,
    References,
    Source,
    evaluated_iterations,
    fresh_iterations,
    load_references,
    load_run,
    revision,
    run_params,
)
from jerp.report.seeds import fmt_spread, normalized, seed_groups, setting_labels, spread

WORKSPACE = "workspace"
# Table II's paired columns against its first run: the column's name, and how the test's
# `what` starts (analysis.compare_iterations)
PAIRED = {"success": "eval success", "agreement": "expert agreement",
          "top-1": "reference action ranked 1st"}


@dataclass
class MethodCurve:
    """One configuration's figures per iteration, for the methods figure: a single seed
    keeps its Wilson interval; a seed group has the mean with low/high at ± one sample
    standard deviation (no k, n)."""

    label: str
    top1: dict[int, Rate]
    success: dict[int, Rate]
    env: str = "alfworld"  # runs of different environments share no games: plotted apart


@dataclass
class Run:
    label: str
    params: dict
    data: list[IterationData]
    refs: References | None = None  # metrics/references.json (the ceiling), when recorded

    @property
    def method(self) -> str:
        return str(self.params.get("run", {}).get("method", "?"))

    @property
    def env(self) -> str:
        return str(self.params.get("env", {}).get("name", "?"))


def load(read: Source, label: str, params: dict | None = None, complete: bool = False
         ) -> Run:
    """`params`: the run's params.yaml when the caller has read it already. Only the
    iterations evaluated under the run's own params (an experiment that re-ran part of
    the pipeline holds its parent's later metrics); `complete`: a ValueError instead where
    that leaves some out."""
    its = evaluated_iterations(read)
    if not its:
        raise FileNotFoundError(f"{label}: no metrics/iter_<i>.json found (not a jerp run, or "
                                "an unknown revision / experiment name)")
    fresh = fresh_iterations(read, its)
    if not fresh or (complete and fresh != its):
        raise ValueError(f"{label}: iterations {sorted(set(its) - set(fresh))} were not "
                         f"evaluated under its params (a `dvc exp run` of part of the "
                         f"pipeline keeps its parent's later outputs); evaluated under them: "
                         f"{fresh or 'none'}")
    its = fresh
    return Run(label, run_params(read) if params is None else params, load_run(read, its),
               load_references(read, games=False))


def load_rev(root: Path, rev: str) -> Run:
    """A git revision, `workspace`, or an experiment name: the nearest experiment of that
    name on HEAD's first-parent line (DVC refuses a name that repeats on two baselines)."""
    if rev == WORKSPACE:
        return load(revision(root, None), rev)
    named = {name: commit for _, exps in reversed(latest_experiments(root))
             for name, commit in exps}
    return load(revision(root, named.get(rev, rev)), rev)


def table2(runs: list[Run], seed: int = 0, at_k: bool = False
           ) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per configuration at its last evaluated iteration. Runs
    that differ only in run.seed share a row: each cell is then the mean over the seeds
    ± their sample standard deviation (seeds.py); a single seed keeps its own figure and
    interval, and its paired tests against the first run (against_first). The ceiling
    rows (ceiling_rows) come last, so the first row stays the one paired against."""
    lasts = [summarize(r.data[-1], at_k=at_k) for r in runs]
    # per task type for ALFWorld; WebShop has its score and success, as in the paper
    types = sorted({t for r, s in zip(runs, lasts, strict=True) if r.env != "webshop"
                    for t in s.by_type})
    webshop = any(r.env == "webshop" for r in runs)
    ref = runs[0].label if runs else "-"
    header = ["method", "run", "iteration", "seeds", *[short_type(t) for t in types],
              "all (95% CI)", "expert agreement", "expert top-1"] + (
              ["score"] if webshop else []) + [f"{what} vs {ref}" for what in PAIRED]
    rows, paired, first = [], [], []
    groups = seed_groups([r.params for r in runs])
    settings = setting_labels([runs[g[0]].params for g in groups])
    for group, setting in zip(groups, settings, strict=True):
        paired.append(against_first(runs, group, seed, at_k))
        first.append(group == [0])
        g = [lasts[i] for i in group]
        one = g[0] if len(g) == 1 else None
        top1 = [s.top1["shown"].value for s in g if "shown" in s.top1]
        scores = [s.score.value for s in g if s.score is not None]
        method = runs[group[0]].method + (f" ({setting})" if setting else "")
        rows.append([method, ", ".join(runs[i].label for i in group),
                     "/".join(sorted({str(s.iteration) for s in g}, key=int)), str(len(g)),
                     *[_cell([s.by_type[t].value for s in g if t in s.by_type], 2)
                       for t in types],
                     _success_cell(one) if one else _cell([s.success.value for s in g], 2),
                     _agreement_cell(g), _cell(top1, 3)]
                    + ([(fmt_estimate(one.score) if one else _cell(scores, 1))
                        if runs[group[0]].env == "webshop" else "-"] if webshop else []))
    for row, cells in zip(rows, paired_cells(paired, first), strict=True):
        row += cells
    return header, rows + ceiling_rows(runs, types, webshop)


def _success_cell(s: IterationSummary) -> str:
    """Success with its interval; labelled success@k where it counts Reflexion's retries."""
    return fmt_rate(s.success) + (f" (success@{s.trials})" if s.trials > 1 else "")


def final_view(d: IterationData) -> IterationData:
    """The iteration with each game's last trial (success@k) in place of its first."""
    return replace(d, games=d.final_games or d.games)


def _agreement_cell(group: list[IterationSummary]) -> str:
    """One seed: its agreement with the Wilson interval; a seed group: mean ± sd."""
    if len(group) == 1:
        return fmt_rate(group[0].agreement, 3)
    return _cell([s.agreement.value for s in group if s.agreement is not None], 3)


def ceiling_rows(runs: list[Run], types: list[str], webshop: bool) -> list[list[str]]:
    """A row per distinct ceiling among the runs (runs on the same eval games at the same
    step limit share theirs): the searching expert's success overall and per task type,
    in the run column the runs it was measured in. None without metrics/references.json."""
    shared: dict[str, list[Run]] = {}
    for r in runs:
        if r.refs is not None and r.refs.ceiling:
            shared.setdefault(r.refs.ceiling.model_dump_json(), []).append(r)
    rows = []
    for group in shared.values():
        top = ceiling(group[0].refs)
        score = fmt_estimate(top.score) if group[0].env == "webshop" else "-"
        rows.append([CEILING, ", ".join(r.label for r in group), "-", "-",
                     *[fmt_rate(top.by_type.get(t)) for t in types], fmt_rate(top.success),
                     "-", "-", *([score] if webshop else []), *["-"] * len(PAIRED)])
    return rows


def against_first(runs: list[Run], group: list[int], seed: int = 0, at_k: bool = False
                  ) -> list[PairedResult | None] | None:
    """The paired tests of a single-seed run against the table's first run, on the games
    and reference states both evaluated at their last iterations, in PAIRED's order:
    success (exact McNemar), each game's expert agreement and top-1 (paired bootstraps
    over games); None for a test without data. None for the first run itself, seed
    groups and runs on other games (nothing to pair)."""
    if group == [0]:
        return None
    run, first = runs[group[0]], runs[0]
    if (len(group) != 1 or run.env != first.env
            or run.params.get("run", {}).get("seed") != first.params.get("run", {}).get("seed")):
        return None  # other games and states: nothing to pair
    a, b = first.data[-1], run.data[-1]
    results = compare_iterations(final_view(a) if at_k else a, final_view(b) if at_k else b,
                                 seed=seed)
    return [next((r for r in results if r.what.startswith(start)), None)
            for start in PAIRED.values()]


def paired_cells(paired: list[list[PairedResult | None] | None],
                 reference: list[bool]) -> list[list[str]]:
    """The paired cells of each row from `against_first`'s results (`reference`: the row
    is the first run itself): the difference this run minus the first and its p-value,
    '*' where significant at 5% and HOLM where Holm's correction over every test in the
    table keeps it so; '-' where nothing was paired."""
    tests = [r for row in paired if row for r in row if r is not None]
    adjusted = dict(zip(map(id, tests), stats.holm([r.p for r in tests]), strict=True))

    def cell(r: PairedResult | None) -> str:
        if r is None:
            return "-"
        marks = (" *" if r.significant else "") + (
            f" {HOLM}" if adjusted[id(r)] < stats.ALPHA else "")
        return f"{r.diff:+.3f} ({fmt_p(r.p)}){marks}"

    return [["(reference)"] * len(PAIRED) if ref else
            ["-"] * len(PAIRED) if row is None else [cell(r) for r in row]
            for row, ref in zip(paired, reference, strict=True)]


def _cell(values: list[float], digits: int) -> str:
    return fmt_spread(spread(values), digits) if values else "-"


def seed_curves(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """Per iteration, the mean ± sd over the seeds of one configuration (`runs`: one seed
    group) of eval success, reference-state top-1 and MRR."""
    by_it: dict[int, list[IterationSummary]] = {}
    for r in runs:
        for d in r.data:
            by_it.setdefault(d.iteration, []).append(summarize(d))
    header = ["iteration", "seeds", "success", "expert top-1", "expert MRR"]
    rows = []
    for i in sorted(by_it):
        ss = by_it[i]
        rows.append([str(i), str(len(ss)), _cell([s.success.value for s in ss], 3),
                     _cell([s.top1["shown"].value for s in ss if "shown" in s.top1], 3),
                     _cell([s.mrr["shown"].value for s in ss if "shown" in s.mrr], 3)])
    return header, rows


def method_curves(runs: list[Run]) -> list[MethodCurve]:
    """One curve per configuration (seed groups as in table2), labelled by method and run."""
    out = []
    for group in seed_groups([r.params for r in runs]):
        sums = [{s.iteration: s for s in (summarize(d) for d in runs[i].data)} for i in group]
        label = f"{runs[group[0]].method} ({', '.join(runs[i].label for i in group)})"
        if len(group) == 1:
            only = sums[0]
            out.append(MethodCurve(label, {i: s.top1["shown"] for i, s in only.items()
                                           if "shown" in s.top1},
                                   {i: s.success for i, s in only.items()}, runs[group[0]].env))
            continue

        def mean_sd(values: list[float]) -> Rate:
            sp = spread(values)
            sd = sp.sd or 0.0
            return Rate(sp.mean, low=sp.mean - sd, high=sp.mean + sd)

        its = sorted({i for s in sums for i in s})
        top1 = {i: mean_sd(v) for i in its
                if (v := [s[i].top1["shown"].value for s in sums
                          if i in s and "shown" in s[i].top1])}
        success = {i: mean_sd([s[i].success.value for s in sums if i in s]) for i in its}
        out.append(MethodCurve(label + f", mean ± sd of {len(group)} seeds", top1, success,
                               runs[group[0]].env))
    return out


def seed_group_of(runs: list[Run], index: int = 0) -> list[Run]:
    """The runs that repeat `runs[index]` with other seeds, itself first."""
    group = next(g for g in seed_groups([r.params for r in runs]) if index in g)
    return [runs[index], *[runs[i] for i in group if i != index]]


def curves(a: Run, b: Run) -> tuple[list[str], list[list[str]]]:
    """Per-iteration success (with intervals) and expert top-1 of two runs."""
    sa = {s.iteration: s for s in (summarize(d) for d in a.data)}
    sb = {s.iteration: s for s in (summarize(d) for d in b.data)}
    header = ["iteration", f"{a.label} success", f"{b.label} success",
              f"{a.label} top-1", f"{b.label} top-1"]

    def top1(s: IterationSummary | None) -> str:
        return "-" if s is None else fmt_rate(s.top1.get("shown"), 3)

    rows = [[str(i), fmt_rate(sa[i].success) if i in sa else "-",
             fmt_rate(sb[i].success) if i in sb else "-", top1(sa.get(i)), top1(sb.get(i))]
            for i in sorted(set(sa) | set(sb))]
    return header, rows


def paired_sentences(a: Run, b: Run, seed: int = 0) -> list[str]:
    """Paired tests on the last iteration both runs evaluated."""
    common = sorted({d.iteration for d in a.data} & {d.iteration for d in b.data})
    if not common:
        return ["The two runs share no evaluated iteration: nothing to pair."]
    i = common[-1]
    da = next(d for d in a.data if d.iteration == i)
    db = next(d for d in b.data if d.iteration == i)
    results = compare_iterations(da, db, seed=seed)
    if not results:
        return [f"Iteration {i}: per-game results (eval.jsonl) or per-state ranks "
                "(expert_states.json) are missing at one of the runs, so no paired test."]
    out = [f"Paired tests at iteration {i}:"]
    for r in results:
        out.append(r.sentence(a.label, b.label))
    return out


def latest_experiments(root: Path, depth: int = 100
                       ) -> list[tuple[str, list[tuple[str, str]]]]:
    """(baseline commit, [(name, commit)]) for every commit on HEAD's first-parent line
    that has DVC experiments (git refs under refs/exps, oldest first), the nearest commit
    first. DVC ties an experiment to the commit it was run from; a later commit (a README
    edit, a report fix) would otherwise drop a finished comparison from the report. An
    experiment is read at its own commit: a name may repeat on another baseline."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True).stdout

    try:
        line = git("rev-list", "--first-parent", f"--max-count={depth}", "HEAD").split()
        # oldest first; refs to commits of one date by name (the last --sort is primary)
        refs = git("for-each-ref", "--sort=refname", "--sort=creatordate",
                   "--format=%(refname) %(objectname)", "refs/exps")
    except (OSError, subprocess.CalledProcessError):
        return []
    by_base: dict[str, list[tuple[str, str]]] = {}
    for ref, commit in (row.split() for row in refs.splitlines() if row.strip()):
        parts = ref.split("/")  # refs/exps/<sha[:2]>/<sha[2:]>/<name>
        if len(parts) == 5:
            by_base.setdefault(parts[2] + parts[3], []).append((parts[4], commit))
    return [(c, by_base[c]) for c in line if c in by_base]


def eval_set(params: dict) -> tuple:
    """What decides a run's eval games and reference states: the eval split, games and
    task types per type played, and eval games whose states are only ranked."""
    env, ev = params.get("env", {}), params.get("eval", {})
    return (env.get("eval_split"), env.get("eval_per_type"), tuple(env.get("task_types") or ()),
            int(ev.get("state_games_per_type", 0)))


def configuration(params: dict) -> str:
    """What a newer run supersedes an older one by: all its params, read through today's
    schema (seeds.normalized). Method, seed and games alone are too coarse: an ablation
    (another finetune.algorithm) on a newer commit would hide the plain run."""
    return json.dumps(normalized(params), sort_keys=True, default=str)


def latest_runs(root: Path, shown: tuple[Run, ...] = ()) -> tuple[list[Run], list[str]]:
    """The newest run of every configuration among the experiments of HEAD's first-parent
    line, loaded, and a line for each that could not be (an experiment that never
    finished, or that re-ran only part of the pipeline, whose later iterations are its
    parent's: `load(complete=True)`). Every experiment of HEAD is kept; an earlier
    commit's only where no newer experiment (nor a run in `shown`, such as the workspace)
    has its configuration, and
    then labelled NAME@COMMIT, as its code may be older. Runs on the environment of
    `shown` come first."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True).stdout.strip()
    seen = {configuration(r.params) for r in shown}
    runs, skipped = [], []
    for base, names in latest_experiments(root):
        at = "" if base == head else f"@{base[:7]}"
        found = set()
        for name, commit in names:
            read = revision(root, commit)
            try:
                params = run_params(read)
                key = configuration(params)
                if at and key in seen:
                    continue
                runs.append(load(read, name + at, params, complete=True))
                found.add(key)
            except (FileNotFoundError, ValueError) as e:
                skipped.append(f"experiment {name}{at} left out: {e}")
        seen |= found
    envs = {r.env for r in shown}
    return sorted(runs, key=lambda r: r.env not in envs), skipped  # shown's env first


def split_by_games(runs: list[Run], here: Run) -> tuple[list[Run], list[tuple[str, list[Run]]]]:
    """(runs on `here`'s games and states, or on another environment, which the tables
    keep apart by themselves; [(description, runs)] for each other eval set of `here`'s
    environment, `here`'s method first). Runs ranked on other reference states (the
    standard preset's) are not comparable in one table with `here`'s, but are among
    themselves."""
    same, other = [], {}
    for r in runs:
        if r.env == here.env and eval_set(r.params) != eval_set(here.params):
            other.setdefault(eval_set(r.params), []).append(r)
        else:
            same.append(r)
    return same, [(describe_games(g[0].params),
                   sorted(g, key=lambda r: r.method != here.method)) for g in other.values()]


def describe_games(params: dict) -> str:
    split, played, types, states = eval_set(params)
    kinds = f" of {', '.join(types)}" if types else ""
    return (f"{params.get('env', {}).get('name')} {split}: {played} played games per task type"
            f"{kinds} + {states} whose reference states only are ranked")
