"""Stage `finetune@i`: update adapter i-1 from rollouts i (RFT / GRPO) -> adapter i."""

from common import ROOT, iteration_args, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.stages import finetune  # noqa: E402


@flow(name="finetune")
def finetune_flow(iteration: int, prev: int) -> None:
    stats = task(finetune.run, name="update policy", cache_policy=NONE)(
        PARAMS, ROOT, iteration, prev
    )
    get_run_logger().info(f"finetune@{iteration}: {stats}")
    with tracking.stage_run("finetune", iteration, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, {f"train_{k}": v for k, v in stats.items()}, iteration)
        tracking.log_artifact(ml, ROOT / paths.train_stats_file(iteration))


if __name__ == "__main__":
    a = iteration_args()
    finetune_flow(a.iteration, a.prev)
