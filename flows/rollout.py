"""Stage `rollout@i`: collect G episodes per train task with policy and pool i-1."""

from common import ROOT, iteration_args, load

PARAMS = load()

from prefect import flow, get_run_logger  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.records import read_json  # noqa: E402
from jerp.runners import task_runner  # noqa: E402
from jerp.stages import rollout  # noqa: E402


@flow(name="rollout", task_runner=task_runner(PARAMS))
def rollout_flow(iteration: int, prev: int) -> None:
    rollout.run(PARAMS, ROOT, iteration, prev)  # episode chunks are this flow's tasks
    stats = read_json(ROOT / paths.rollout_stats_file(iteration))
    get_run_logger().info(f"rollout@{iteration}: {stats}")
    with tracking.stage_run("rollout", iteration, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, {f"train_{k}": v for k, v in stats.items()}, iteration)
        tracking.log_artifact(ml, ROOT / paths.rollouts_file(iteration))
        tracking.log_artifact(ml, ROOT / paths.rollout_stats_file(iteration))


if __name__ == "__main__":
    a = iteration_args()
    rollout_flow(a.iteration, a.prev)
