"""Runs side by side: two runs' curves and paired tests, and the JERP paper's Table II.

A run is a git revision or DVC experiment name (or `workspace`), read through
dvc.api (`load.revision`), so nothing is checked out. Two runs of different
methods on the same seed play the same eval games and reference states, so
their last iterations are compared pairwise (exact McNemar on success, paired
bootstrap on reference-state top-1). Table II has methods as rows, success
per task type and overall at the last evaluated iteration, then expert top-1
(and the WebShop score where the run is on WebShop).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from jerp.report.analysis import (
    IterationSummary,
    compare_iterations,
    fmt_estimate,
    fmt_rate,
    summarize,
)
from jerp.report.load import (
    IterationData,
    Source,
    evaluated_iterations,
    load_run,
    revision,
    run_params,
)

WORKSPACE = "workspace"


@dataclass
class Run:
    label: str
    params: dict
    data: list[IterationData]

    @property
    def method(self) -> str:
        return str(self.params.get("run", {}).get("method", "?"))

    @property
    def env(self) -> str:
        return str(self.params.get("env", {}).get("name", "?"))


def load(read: Source, label: str) -> Run:
    its = evaluated_iterations(read)
    if not its:
        raise FileNotFoundError(f"{label}: no metrics/iter_<i>.json found (not a jerp run, or "
                                "an unknown revision / experiment name)")
    return Run(label, run_params(read), load_run(read, its))


def load_rev(root: Path, rev: str) -> Run:
    return load(revision(root, None if rev == WORKSPACE else rev), rev)


def _short(task_type: str) -> str:
    """pick_heat_then_place_in_recep -> heat (the column names Table II uses)."""
    names = {"pick_and_place_simple": "put", "pick_clean_then_place_in_recep": "clean",
             "pick_heat_then_place_in_recep": "heat", "pick_cool_then_place_in_recep": "cool",
             "look_at_obj_in_light": "examine", "pick_two_obj_and_place": "puttwo"}
    return names.get(task_type, task_type)


def table2(runs: list[Run]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per run, its last evaluated iteration."""
    lasts = [summarize(r.data[-1]) for r in runs]
    types = sorted({t for s in lasts for t in s.by_type})
    webshop = any(r.env == "webshop" for r in runs)
    header = ["method", "run", "iteration", *[_short(t) for t in types], "all (95% CI)",
              "expert top-1"] + (["score"] if webshop else [])
    rows = []
    for run, s in zip(runs, lasts, strict=True):
        top1 = s.top1.get("shown")
        rows.append([run.method, run.label, str(s.iteration),
                     *[f"{s.by_type[t].value:.2f}" if t in s.by_type else "-" for t in types],
                     fmt_rate(s.success), "-" if top1 is None else f"{top1.value:.3f}"]
                    + ([fmt_estimate(s.score)] if webshop else []))
    return header, rows


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
        unit = "games" if r.b_only is not None else "reference states"
        out.append(r.sentence(a.label, b.label, unit))
    return out


def experiment_names(root: Path) -> list[str]:
    """DVC experiments based on the current commit (git refs under refs/exps), oldest first."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=True).stdout

    try:
        head = git("rev-parse", "HEAD").strip()
        refs = git("for-each-ref", "--sort=creatordate", "--format=%(refname)", "refs/exps")
    except (OSError, subprocess.CalledProcessError):
        return []
    names = []
    for ref in refs.split():
        parts = ref.split("/")  # refs/exps/<sha[:2]>/<sha[2:]>/<name>
        if len(parts) == 5 and parts[2] + parts[3] == head:
            names.append(parts[4])
    return names

