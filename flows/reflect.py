"""Stage `reflect@i`: contrast rollouts i with reference successes; propose pool operations."""

from common import ROOT, iteration_args, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.stages import reflect  # noqa: E402


@flow(name="reflect")
def reflect_flow(iteration: int, prev: int) -> None:
    props = task(reflect.run, name="reflect", cache_policy=NONE)(
        PARAMS, ROOT, iteration, prev
    )
    accepted = sum(p.accepted for p in props)
    rejected = len(props) - accepted
    get_run_logger().info(f"reflect@{iteration}: {accepted} accepted, {rejected} rejected")
    with tracking.stage_run("reflect", iteration, PARAMS.model_dump()) as ml:
        tracking.log_metrics(
            ml, {"proposals": len(props), "proposals_rejected": len(props) - accepted}, iteration
        )
        tracking.log_artifact(ml, ROOT / paths.proposals_file(iteration))


if __name__ == "__main__":
    a = iteration_args()
    reflect_flow(a.iteration, a.prev)
