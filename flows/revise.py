"""Stage `revise@i`: apply accepted proposals to pool i-1; write the immutable snapshot i."""

from common import ROOT, iteration_args, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.stages import revise  # noqa: E402


@flow(name="revise")
def revise_flow(iteration: int, prev: int) -> None:
    snap, counts = task(revise.run, name="revise pool", cache_policy=NONE)(
        PARAMS, ROOT, iteration, prev
    )
    get_run_logger().info(f"revise@{iteration}: {len(snap.rules)} rules; applied {counts}")
    with tracking.stage_run("revise", iteration, PARAMS.model_dump()) as ml:
        metrics = {"rules": len(snap.rules), **{f"ops_{k}": v for k, v in counts.items()}}
        tracking.log_metrics(ml, metrics, iteration)
        tracking.log_artifact(ml, ROOT / paths.rules_file(iteration))


if __name__ == "__main__":
    a = iteration_args()
    revise_flow(a.iteration, a.prev)
