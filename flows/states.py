"""Stage `states`: replay the reference solutions of the eval games only ranked."""

from common import ROOT, load

PARAMS = load()

from prefect import flow, get_run_logger  # noqa: E402

from jerp import tracking  # noqa: E402
from jerp.runners import task_runner  # noqa: E402
from jerp.stages import states  # noqa: E402


@flow(name="states", task_runner=task_runner(PARAMS))
def states_flow() -> None:
    refs = states.run(PARAMS, ROOT)  # chunks of games are this flow's tasks
    won = sum(r.won for r in refs)
    get_run_logger().info(f"states: {won}/{len(refs)} state games replayed to a win")
    with tracking.stage_run("states", None, PARAMS.model_dump()) as ml:
        tracking.log_metrics(ml, {"state_games": len(refs), "state_games_won": won}, None)


if __name__ == "__main__":
    states_flow()
