"""Stage `references`: the train games' demonstrations (the searching expert's, or
walkthroughs), the eval games' walkthroughs, and the expert's ceiling on the eval games."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger  # noqa: E402

from jerp import paths, tracking  # noqa: E402
from jerp.metrics_schema import ReferenceStats, read_record  # noqa: E402
from jerp.runners import task_runner  # noqa: E402
from jerp.stages import references  # noqa: E402


@flow(name="references", task_runner=task_runner(PARAMS))
def references_flow() -> None:
    refs = references.run(PARAMS, ROOT)  # chunks of games are this flow's tasks
    won = sum(r.won for r in refs)
    stats = read_record(ROOT / paths.references_stats_file(), ReferenceStats)
    demos, ceiling = stats.demos, stats.ceiling
    log = get_run_logger()
    log.info(f"references: {won}/{len(refs)} won; train demonstrations by {demos.by}")
    metrics = {"references": len(refs), "references_won": won,
               "expert_demos": demos.by.get("expert", 0)}
    if ceiling:
        log.info(f"searching expert on the eval games: success {ceiling.success}")
        metrics["ceiling_success"] = ceiling.success
    with tracking.stage_run("references", None, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, metrics, None)


if __name__ == "__main__":
    references_flow()
