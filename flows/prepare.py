"""Stage `prepare`: sample the run's tasks per split; write iteration 0's empty pool."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.stages import prepare  # noqa: E402


@flow(name="prepare")
def prepare_flow() -> None:
    tl = task(prepare.run, name="sample tasks", cache_policy=NONE)(PARAMS, ROOT)
    counts = {f"tasks_{k}": len(v) for k, v in tl.splits.items()}
    get_run_logger().info(f"tasks: {counts}")
    with tracking.stage_run("prepare", None, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, counts, None)
        tracking.log_artifact(ml, ROOT / paths.tasks_file())


if __name__ == "__main__":
    prepare_flow()
