"""Stage `evaluate@i`: play the eval split with policy i and pool i; write metrics."""

from common import ROOT, iteration_args, load

PARAMS = load()

from prefect import flow, get_run_logger  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.runners import task_runner  # noqa: E402
from jerp.stages import evaluate  # noqa: E402


@flow(name="evaluate", task_runner=task_runner(PARAMS))
def evaluate_flow(iteration: int) -> dict:
    metrics = evaluate.run(PARAMS, ROOT, iteration)  # episode chunks are this flow's tasks
    get_run_logger().info(f"evaluate@{iteration}: {metrics}")
    with tracking.stage_run("evaluate", iteration, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, metrics, iteration, on_parent=True)
        tracking.log_artifact(ml, ROOT / paths.eval_file(iteration))
        tracking.log_artifact(ml, ROOT / paths.metrics_file(iteration))
    return metrics


if __name__ == "__main__":
    evaluate_flow(iteration_args(with_prev=False).iteration)
