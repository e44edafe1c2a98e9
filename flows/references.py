"""Stage `references`: replay the reference solutions of the run's train and eval games."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger  # noqa: E402

from jerp import tracking  # noqa: E402
from jerp.runners import task_runner  # noqa: E402
from jerp.stages import references  # noqa: E402


@flow(name="references", task_runner=task_runner(PARAMS))
def references_flow() -> None:
    refs = references.run(PARAMS, ROOT)  # chunks of games are this flow's tasks
    won = sum(r.won for r in refs)
    get_run_logger().info(f"references: {won}/{len(refs)} replayed to a win")
    with tracking.stage_run("references", None, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, {"references": len(refs), "references_won": won}, None)


if __name__ == "__main__":
    references_flow()
