"""Stage `warmstart`: LoRA on the warm-start games' reference successes -> adapter 0."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.stages import warmstart  # noqa: E402


@flow(name="warmstart")
def warmstart_flow() -> None:
    stats = task(warmstart.run, name="train on references", cache_policy=NONE)(PARAMS, ROOT)
    get_run_logger().info(f"warmstart: {stats}")
    with tracking.stage_run("warmstart", 0, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, {f"train_{k}": v for k, v in stats.items()}, 0)
        tracking.log_artifact(ml, ROOT / paths.train_stats_file(0))


if __name__ == "__main__":
    warmstart_flow()
