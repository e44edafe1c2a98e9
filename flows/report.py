"""Stage `report`: per-iteration tables and plots under reports/."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.report.build import build  # noqa: E402


@flow(name="report")
def report_flow() -> None:
    title = f"{PARAMS.env.name}: {PARAMS.run.method}, {PARAMS.policy.model}"
    rows = task(build, name="build report", cache_policy=NONE)(
        ROOT, PARAMS.eval_iterations, title
    )
    get_run_logger().info(f"report: {len(rows)} iterations -> {paths.REPORTS}/index.md")
    with tracking.stage_run("report", None, PARAMS.model_dump()) as ml:
        for name in ("index.md", "success.png", "iterations.csv"):
            tracking.log_artifact(ml, ROOT / paths.REPORTS / name)


if __name__ == "__main__":
    report_flow()
