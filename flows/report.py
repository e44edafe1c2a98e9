"""Stage `report`: reports/ (Markdown, self-contained HTML, PNG, CSV), then close the MLflow
parent run with the learning curves and the report and rule snapshots as its artifacts."""

import os

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.records import read_json  # noqa: E402
from jerp.report import experiments  # noqa: E402
from jerp.report.build import FIGURES, build  # noqa: E402
from jerp.report.load import workspace  # noqa: E402


def methods_tables() -> tuple[tuple | None, tuple | None, list | None, list]:
    """Table II over the workspace and the latest DVC experiments on its games
    (experiments.latest_runs), the workspace's figures over the experiments that repeat
    it with other seeds, every configuration's curves for the methods figure, and a
    Table II per other eval set of the workspace's environment (the standard preset's
    runs beside a quick workspace). Nothing inside a queued experiment, which must not
    read its siblings."""
    if os.environ.get("DVC_EXP_NAME"):
        return None, None, None, []
    here = experiments.load(workspace(ROOT), experiments.WORKSPACE)
    runs, skipped = experiments.latest_runs(ROOT, shown=(here,))
    for line in skipped:
        get_run_logger().warning(f"report: {line}")
    same, other = experiments.split_by_games(runs, here)
    more = [(games, experiments.table2(group, seed=PARAMS.run.seed)) for games, group in other]
    if not same:
        return None, None, None, more
    every = [here, *same]
    group = experiments.seed_group_of(every, 0)
    seeds = experiments.seed_curves(group) if len(group) > 1 else None
    return (experiments.table2(every, seed=PARAMS.run.seed), seeds,
            experiments.method_curves(every), more)


@flow(name="report")
def report_flow() -> None:
    title = f"{PARAMS.env.name}: {PARAMS.run.method}, {PARAMS.policy.model}"
    table2, seeds, methods, more = task(methods_tables, name="compare experiments",
                                        cache_policy=NONE)()
    learned = PARAMS.learned_iterations
    rows = task(build, name="build report", cache_policy=NONE)(
        ROOT, PARAMS.eval_iterations, title, PARAMS.run.seed, table2, seeds, methods, more,
        learned,
    )
    get_run_logger().info(f"report: {len(rows)} iterations -> {paths.REPORTS}/index.html")
    reports = ROOT / paths.REPORTS
    with tracking.stage_run("report", None, PARAMS.model_dump()) as ml:
        curves = {r["iteration"]: {**r, **read_json(ROOT / paths.metrics_file(r["iteration"]))}
                  for r in rows}
        tracking.log_curves(ml, {i: {k: v for k, v in m.items() if k != "iteration"}
                                 for i, m in curves.items()})
        files = [reports / n for n in ("index.md", "index.html", "iterations.csv", *FIGURES)]
        snapshots = {f"rules/iter_{i}": [ROOT / paths.rules_file(i)] for i in learned}
        tracking.close_parent(ml, {"report": files, **snapshots})


if __name__ == "__main__":
    report_flow()
