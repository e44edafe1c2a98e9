"""The report's figures as PNG bytes (matplotlib, Agg): intervals drawn as error bars.

Each function always returns a figure; where its inputs were not recorded the
figure says so, so the report's set of files is the same for every run.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from jerp.report.analysis import CEILING, PROMPTS, IterationSummary, Rate
from jerp.report.evolution import PoolOps

if TYPE_CHECKING:
    from jerp.metrics_schema import LossPoint, TrainRecord
    from jerp.report.experiments import MethodCurve

_PROMPT_LABEL = {"shown": "with its working set (acts with)", "none": "no rules",
                 "wrong": "another task type's rules"}
_PROMPT_STYLE = {"shown": ("o-", "tab:blue"), "none": ("s--", "tab:orange"),
                 "wrong": ("^:", "tab:red")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _plt().close(fig)
    return buf.getvalue()


def _empty(title: str, note: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=10, color="0.35")
    return _png(fig)


def _rate_line(ax, its: list[int], rates: list[Rate | None], fmt: str, color: str, label: str,
               offset: float = 0.0) -> None:
    pts = [(i + offset, r) for i, r in zip(its, rates, strict=True) if r is not None]
    if not pts:
        return
    xs = [x for x, _ in pts]
    ys = [r.value for _, r in pts]
    if all(r.low is not None for _, r in pts):
        err = [[r.value - r.low for _, r in pts], [r.high - r.value for _, r in pts]]
        ax.errorbar(xs, ys, yerr=err, fmt=fmt, color=color, label=label, capsize=3)
    else:
        ax.plot(xs, ys, fmt, color=color, label=label + " (no interval recorded)")


def _axes(ax, its: list[int], ylabel: str, title: str, unit: bool = True) -> None:
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_xticks(its)
    if unit:
        ax.set_ylim(-0.03, 1.03)
    ax.set_title(title)
    ax.grid(alpha=0.3)


def success(rows: list[IterationSummary], title: str,
            ceiling: IterationSummary | None = None) -> bytes:
    """Eval success per iteration, overall and per task type, with 95% Wilson intervals;
    the searching expert's success on the same games as a dashed line (its interval
    shaded)."""
    plt = _plt()
    its = [r.iteration for r in rows]
    types = sorted({t for r in rows for t in r.by_type})
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    _rate_line(a1, its, [r.success for r in rows], "o-", "tab:blue", "eval success")
    if ceiling is not None:
        _ceiling_line(a1, ceiling.success)
    n = rows[-1].success.n if rows else None
    _axes(a1, its, "success rate", f"eval success, 95% Wilson interval (n = {n or '?'} games)")
    a1.legend(fontsize=8)
    cmap = plt.get_cmap("tab10")
    for j, t in enumerate(types):
        off = (j - (len(types) - 1) / 2) * 0.06
        _rate_line(a2, its, [r.by_type.get(t) for r in rows], "o-", cmap(j % 10), t, off)
    _axes(a2, its, "success rate", "per task type (points offset to separate them)")
    if types:
        a2.legend(fontsize=7)
    fig.suptitle(title)
    return _png(fig)


def _ceiling_line(ax, rate: Rate) -> None:
    ax.axhline(rate.value, color="0.25", linestyle="--", linewidth=1.2, label=CEILING)
    if rate.low is not None:
        ax.axhspan(rate.low, rate.high, color="0.5", alpha=0.12, linewidth=0)


def expert(rows: list[IterationSummary]) -> bytes:
    """Expert agreement on the policy's own states (the headline proxy) beside walkthrough
    top-1 and MRR under the acting prompt, each with an interval that resamples games."""
    if not any("shown" in r.top1 or r.agreement for r in rows):
        return _empty("expert agreement and walkthrough top-1",
                      "neither expert_agreement nor expert_top1 was recorded in this run")
    plt = _plt()
    its = [r.iteration for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    _rate_line(ax, its, [r.agreement for r in rows], "D-", "tab:purple",
               "expert agreement: own decisions = expert's (95%, games resampled)", -0.05)
    _rate_line(ax, its, [r.top1.get("shown") for r in rows], "o:", "tab:blue",
               "walkthrough top-1, secondary (95%, games resampled)")
    _rate_line(ax, its, [r.mrr.get("shown") for r in rows], "s--", "tab:green",
               "walkthrough MRR (95%, games resampled)", 0.05)
    _axes(ax, its, "share of decisions or states / MRR",
          "expert agreement and walkthrough reference states")
    ax.legend(fontsize=8)
    return _png(fig)


def competence(rows: list[IterationSummary]) -> bytes:
    """The three competence curves: top-1 with the working set, no rules, wrong rules."""
    if not any("none" in r.top1 for r in rows):
        shown = any("shown" in r.top1 for r in rows)
        note = ("this method shows no rules: only the acting prompt is scored"
                if shown and any(r.mrr for r in rows) else "not recorded in this run")
        return _empty("where the competence lives (rules vs weights)", note)
    plt = _plt()
    its = [r.iteration for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for j, p in enumerate(PROMPTS):
        fmt, color = _PROMPT_STYLE[p]
        _rate_line(ax, its, [r.top1.get(p) for r in rows], fmt, color, _PROMPT_LABEL[p],
                   (j - 1) * 0.05)
    _axes(ax, its, "reference action ranked 1st",
          "where the competence lives: same policy, three prompts")
    ax.legend(fontsize=8)
    return _png(fig)


def methods(curves: list[MethodCurve]) -> bytes:
    """Every method's reference-state top-1 and eval success per iteration, side by side;
    one row per environment (runs on other environments play other games)."""
    if not curves:
        return _empty("methods compared", "no DVC experiments on this line of history: "
                      "`make compare` runs the other methods on the same games")
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    envs = list(dict.fromkeys(c.env for c in curves))
    fig, axes = plt.subplots(len(envs), 2, figsize=(12, 4.5 * len(envs)), squeeze=False)
    for (a1, a2), env in zip(axes, envs, strict=True):
        row = [c for c in curves if c.env == env]
        its = sorted({i for c in row for i in (*c.top1, *c.success)})
        for j, c in enumerate(row):
            off = (j - (len(row) - 1) / 2) * 0.04
            for ax, rates in ((a1, c.top1), (a2, c.success)):
                if list(rates) == [0] and len(its) > 1:
                    # a frozen method without memory (react, reflexion) is evaluated once:
                    # every later iteration would repeat iteration 0, so it is drawn flat
                    ax.hlines(rates[0].value, its[0], its[-1], colors=[cmap(j % 10)],
                              linestyles="dashed", linewidth=1)
                    label = f"{c.label} (evaluated once)"
                else:
                    label = c.label
                _rate_line(ax, sorted(rates), [rates[i] for i in sorted(rates)], "o-",
                           cmap(j % 10), label, off)
        _axes(a1, its, "reference action ranked 1st",
              f"{env}: reference-state accuracy, 95% interval")
        _axes(a2, its, "success rate", f"{env}: eval success, 95% interval (same games)")
        a2.legend(fontsize=7, loc="upper right")  # success sits near 0 at these sizes
    fig.suptitle("methods compared (seed groups: mean ± sd; points offset to separate them)",
                 fontsize=10)
    return _png(fig)


def pool(ops: list[PoolOps]) -> bytes:
    """Pool size (line) and the operations of each revision (stacked bars)."""
    if not ops:
        return _empty("rule pool", "no rule snapshots in this run")
    plt = _plt()
    its = [o.iteration for o in ops]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.plot(its, [o.size for o in ops], "o-", color="tab:green")
    _axes(a1, its, "rules", "rules in the pool", unit=False)
    a1.set_ylim(bottom=0)
    bottom = [0] * len(ops)
    for name, color in (("added", "tab:green"), ("edited", "tab:olive"),
                        ("merged", "tab:purple"), ("removed", "tab:red"),
                        ("rescored", "tab:gray")):
        vals = [getattr(o, name) for o in ops]
        a2.bar(its, vals, bottom=bottom, color=color, label=name)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    _axes(a2, its, "operations", "pool operations per revision", unit=False)
    a2.legend(fontsize=8)
    return _png(fig)


def training(train: dict[int, TrainRecord]) -> bytes:
    """The loss curve of every policy update (CE and GRPO terms), iteration by iteration."""
    curves = {i: t.loss_curve or [] for i, t in sorted(train.items())}
    if not any(curves.values()):
        return _empty("training loss", "no loss curve recorded (metrics/train_i.json)")
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    x0 = 0
    cmap = plt.get_cmap("tab10")
    for j, (i, curve) in enumerate(curves.items()):
        xs = _steps(curve, x0)
        for ax, key in ((a1, "ce"), (a2, "pg")):
            pts = [(x, getattr(p, key)) for x, p in zip(xs, curve, strict=True)
                   if getattr(p, key) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", ms=3, color=cmap(j % 10),
                        label=f"iteration {i}")
        x0 = (xs[-1] if xs else x0) + 1
    for ax, name in ((a1, "candidate cross-entropy (RFT / warm start)"),
                     (a2, "GRPO policy-gradient term")):
        ax.set_xlabel("optimizer step (iterations laid end to end)")
        ax.set_ylabel("loss")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return _png(fig)


def _steps(curve: list[LossPoint], x0: int) -> list[int]:
    """x of each optimizer step from x0 on; the warm start's DAgger rounds (`round`)
    restart their step count, so each round is laid after the one before."""
    xs: list[int] = []
    base, current = x0, None
    for p in curve:
        if p.round != current and xs:
            base = xs[-1]
        current = p.round
        xs.append(base + p.step)
    return xs
