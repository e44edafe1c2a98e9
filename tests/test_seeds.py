"""Several seeds of one configuration: grouping, mean ± sd by hand, Table II and the report
built from the recorded metrics of three seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from report_fixtures import write_run

from jerp import paths
from jerp.report import experiments
from jerp.report.build import build
from jerp.report.load import workspace
from jerp.report.seeds import Spread, fmt_spread, seed_groups, setting_labels, spread


def test_spread_by_hand():
    s = spread([0.5, 0.75, 1.0])  # mean 0.75; squared deviations 1/16 + 0 + 1/16 over n - 1 = 2
    assert s.mean == pytest.approx(0.75) and s.sd == pytest.approx(0.25) and s.n == 3
    assert fmt_spread(s) == "0.750 ± 0.250 (3 seeds)"
    assert spread([0.4]) == Spread(0.4, None, 1) and fmt_spread(spread([0.4]), 2) == "0.40"
    with pytest.raises(ValueError, match="no values"):
        spread([])


def _p(method: str, seed: int, **run) -> dict:
    return {"run": {"method": method, "seed": seed, **run}, "env": {"name": "alfworld"}}


def test_runs_that_differ_only_in_seed_share_a_group():
    params = [_p("jerp", 0), _p("react", 0), _p("jerp", 1), _p("jerp", 2, iterations=5),
              _p("jerp", 2), _p("jerp", 0)]
    # 3 (iterations=5) is another configuration; 5 repeats seed 0 of group 0: its own group
    assert seed_groups(params) == [[0, 2, 4], [1], [3], [5]]


def test_a_param_added_since_an_older_run_counts_at_its_default():
    """An older run's params.yaml lacks warmstart.batch_sequences (added later, default 4):
    it repeats a newer run that sets 4, and differs from one that sets 6."""
    from jerp.config import WarmstartParams

    default = WarmstartParams.model_fields["batch_sequences"].default
    older = _p("policy_only", 0)
    newer = [{**_p("policy_only", s), "warmstart": {"batch_sequences": b}}
             for s, b in ((1, default), (2, default + 2))]
    assert seed_groups([older, *newer]) == [[0, 1], [2]]


def test_a_row_says_which_setting_sets_it_apart():
    """Ablations of one method (finetune.algorithm) name the knob; methods and seeds don't."""
    rft = {**_p("jerp", 0), "finetune": {"algorithm": "rft", "epochs": 3.0}}
    labels = setting_labels([_p("jerp", 0), rft, _p("react", 1)])
    assert labels == ["", "finetune.algorithm=rft, finetune.epochs=3.0", ""]
    assert setting_labels([_p("jerp", 0), rft], most=1)[1] == "finetune.algorithm=rft +1"


# Iteration 1 of the three seeds: the fixture's run (seed 0) wins g0-g3 of g0-g5 and ranks
# the reference first at 3 of 4 states; seed 1 loses g3 and ranks 2 of 4 first; seed 2
# also wins g4 and ranks all 4 first.
SEED_WINS = {0: [], 1: ["g3"], 2: ["g4"]}
SEED_RANKS = {0: [1, 1, 1, 2], 1: [1, 1, 2, 2], 2: [1, 1, 1, 1]}


def _seed_run(root: Path, method: str, seed: int) -> experiments.Run:
    root.mkdir()
    write_run(root)
    (root / "params.yaml").write_text(yaml.safe_dump({**_p(method, seed),
                                                      "eval_iterations": [0, 1]}))
    lines = [json.loads(x) for x in (root / paths.eval_file(1)).read_text().splitlines()]
    for g in lines:
        if g["task_id"] in SEED_WINS.get(seed, []):
            g["won"] = not g["won"]
    (root / paths.eval_file(1)).write_text("".join(json.dumps(g) + "\n" for g in lines))
    states = json.loads((root / paths.expert_states_file(1)).read_text())
    for r, k in zip(states["rows"], SEED_RANKS[seed], strict=True):
        r["rank"]["shown"] = k
    (root / paths.expert_states_file(1)).write_text(json.dumps(states))
    return experiments.load(workspace(root), f"{method}-seed{seed}")


@pytest.fixture
def runs(tmp_path) -> list[experiments.Run]:
    return [*(_seed_run(tmp_path / f"s{s}", "jerp", s) for s in (0, 1, 2)),
            _seed_run(tmp_path / "react", "react", 0)]


def test_table_two_over_three_seeds(runs):
    header, rows = experiments.table2(runs)
    assert header[:4] == ["method", "run", "iteration", "seeds"]
    assert [r[0] for r in rows] == ["jerp", "react"]  # they differ in method only
    jerp, react = ({h: v for h, v in zip(header, r, strict=True)} for r in rows)
    assert jerp["run"] == "jerp-seed0, jerp-seed1, jerp-seed2" and jerp["seeds"] == "3"
    # success 4/6, 3/6, 5/6: mean 2/3, sd 1/6
    assert jerp["all (95% CI)"] == "0.67 ± 0.17 (3 seeds)"
    # put (g0, g2, g4): 2/3, 2/3, 3/3: mean 7/9, sd sqrt((1 + 1 + 4) / 81 / 2) = 0.192
    assert jerp["put"] == "0.78 ± 0.19 (3 seeds)"
    # heat (g1, g3, g5): 2/3, 1/3, 2/3: mean 5/9, the same sd
    assert jerp["heat"] == "0.56 ± 0.19 (3 seeds)"
    assert jerp["expert top-1"] == "0.750 ± 0.250 (3 seeds)"
    # one seed: its own figure and Wilson interval, as before
    assert react["seeds"] == "1" and react["all (95% CI)"] == "4/6 = 0.67 (0.30-0.90)"
    assert react["put"] == "0.67" and react["expert top-1"] == "0.750"


def test_method_curves_one_per_configuration(runs):
    """The methods figure's data: seed groups as mean ± sd, a single seed with Wilson."""
    jerp, react = experiments.method_curves(runs)
    assert jerp.label.startswith("jerp (jerp-seed0, jerp-seed1, jerp-seed2")
    assert "mean ± sd of 3 seeds" in jerp.label
    # success at iteration 1: 4/6, 3/6, 5/6 -> mean 2/3, sd 1/6
    s1 = jerp.success[1]
    assert (round(s1.value, 4), round(s1.low, 4), round(s1.high, 4)) == (0.6667, 0.5, 0.8333)
    assert s1.n is None  # a spread, not a count
    assert react.top1[1].n == 4 and react.top1[1].low is not None  # Wilson on 4 states
    assert sorted(react.success) == [0, 1]


def test_seed_curves_and_report_show_the_spread(runs, tmp_path):
    group = experiments.seed_group_of(runs, 1)
    assert [r.label for r in group] == ["jerp-seed1", "jerp-seed0", "jerp-seed2"]
    header, rows = experiments.seed_curves(group)
    assert header == ["iteration", "seeds", "success", "expert top-1", "expert MRR"]
    # iteration 0 is the same in every seed (sd 0); iteration 1: MRR 0.875, 0.75, 1.0
    assert rows[0][:3] == ["0", "3", "0.167 ± 0.000 (3 seeds)"]
    sd = math.sqrt(2 * 0.125 ** 2 / 2)
    assert rows[1] == ["1", "3", "0.667 ± 0.167 (3 seeds)", "0.750 ± 0.250 (3 seeds)",
                       f"0.875 ± {sd:.3f} (3 seeds)"]
    root = tmp_path / "s0"
    more = [("alfworld eval_out: 2 played games per task type + 6 whose reference states "
             "only are ranked", experiments.table2(runs[:2]))]
    build(root, [0, 1], "t", table2=experiments.table2(runs), seeds=(header, rows),
          curves=experiments.method_curves(runs), more=more)
    md = (root / paths.REPORTS / "index.md").read_text()
    assert "methods.png" in md
    # a Table II of another eval set follows, paired within itself
    assert "## Methods compared on other games or states: alfworld eval_out: 2 played" in md
    assert f"Paired within this table, against {runs[0].label}" in md
    assert "## Over seeds (3 runs that differ only in run.seed)" in md
    assert "0.667 ± 0.167 (3 seeds)" in md and "0.67 ± 0.17 (3 seeds)" in md
    assert "0.667 ± 0.167 (3 seeds)" in (root / paths.REPORTS / "index.html").read_text()
