"""Stage `references`: replay the reference solutions of the run's train and eval games."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NONE  # noqa: E402

from jerp import tracking  # noqa: E402
from jerp.stages import references  # noqa: E402


@flow(name="references")
def references_flow() -> None:
    refs = task(references.run, name="replay references", cache_policy=NONE)(PARAMS, ROOT)
    won = sum(r.won for r in refs)
    get_run_logger().info(f"references: {won}/{len(refs)} replayed to a win")
    with tracking.stage_run("references", None, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, {"references": len(refs), "references_won": won}, None)


if __name__ == "__main__":
    references_flow()
