"""The report from a small recorded run: numbers, paired tests, rule evolution, offline HTML."""

from __future__ import annotations

import csv
import json
import re

import pytest
from report_fixtures import rule, write_run

from jerp import paths
from jerp.records import Proposal, RuleSnapshot, StateRank
from jerp.report import analysis
from jerp.report.build import FIGURES, build
from jerp.report.document import Figure, Heading, Table, Text, to_html, to_markdown
from jerp.report.evolution import pool_ops, top_rules
from jerp.report.load import load_run, workspace


def test_summary_counts_games_and_states(tmp_path):
    data = load_run(workspace(write_run(tmp_path)), [0, 1])
    s1 = analysis.summarize(data[1])
    assert (s1.success.k, s1.success.n) == (4, 6)
    assert s1.by_type["pick_and_place_simple"].k == 2  # g0, g2 won; g4 lost
    assert (s1.top1["shown"].k, s1.top1["none"].k, s1.top1["wrong"].k) == (3, 2, 0)
    assert s1.mrr["shown"].value == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_reference_state_ranked_first_counts_as_top1():
    state = StateRank(task_id="g", step=0, rank={"shown": 1})
    s = analysis.summarize(analysis.IterationData(0, {}, states=[state]))
    assert s.top1["shown"].value == 1.0 and s.mrr["shown"].value == 1.0


def test_paired_first_vs_last(tmp_path):
    data = load_run(workspace(write_run(tmp_path)), [0, 1])
    games, states = analysis.compare_iterations(data[0], data[1])
    assert (games.b_only, games.c_only, games.p) == (0, 3, pytest.approx(0.25))
    assert not games.significant and games.needed is not None
    assert states.pairs == 4 and states.diff == pytest.approx(0.25)
    text = games.sentence("iteration 0", "iteration 1")
    assert "not significant" in text and f"about {games.needed} paired games" in text
    # the sign says which way: iteration 1 won 3 of the 6 games more than iteration 0
    assert "(iteration 1 minus iteration 0: +0.500" in text


def test_webshop_score_is_paired_on_games():
    """WebShop's score is per game (its reward), so its sentence counts games."""
    from jerp.report.load import EvalGame

    a = [EvalGame(f"g{i}", "beauty", False, r) for i, r in enumerate([0.5, 0.25, 0.0])]
    b = [EvalGame(f"g{i}", "beauty", False, r) for i, r in enumerate([0.75, 0.5, 0.25])]
    score = analysis.paired_score(a, b)
    assert score.unit == "games" and score.diff == pytest.approx(25.0)
    assert "on the same 3 games" in score.sentence("iteration 0", "iteration 1")


def test_competence_verdict_says_whether_gap_shrank(tmp_path):
    rows = [analysis.summarize(d) for d in load_run(workspace(write_run(tmp_path)), [0, 1])]
    # gaps: iteration 0 = 2/4 - 0/4 = 0.5, iteration 1 = 3/4 - 2/4 = 0.25
    assert "+0.500" in analysis.competence_verdict(rows)
    assert "shrank" in analysis.competence_verdict(rows)
    # rules that hurt at first and are neutral at the end held no competence to move
    hurt = [analysis.IterationSummary(i, analysis.Rate(0), {},
                                      top1={"shown": analysis.Rate(v), "none": analysis.Rate(0.4)},
                                      mrr={}) for i, v in ((1, 0.3), (3, 0.4))]
    text = analysis.competence_verdict(hurt)
    assert "never turned positive" in text and "moved" not in text
    shown_only = [analysis.IterationSummary(0, analysis.Rate(0), {},
                                            top1={"shown": analysis.Rate(0.5)},
                                            mrr={"shown": analysis.Estimate(0.6)})]
    assert "shows no rules" in analysis.competence_verdict(shown_only)
    # with the per-state ranks: whether the change is beyond noise (4 states: it is not)
    states = {d.iteration: d.states for d in load_run(workspace(write_run(tmp_path)), [0, 1])}
    text = analysis.competence_verdict(rows, states)
    assert "shrank" in text and "paired bootstrap over" in text and "within noise" in text


def test_pool_ops_counts_each_operation():
    prev = RuleSnapshot(iteration=1, capacity=10, rules=[
        rule(1, 3, 1, ["a"]), rule(2, 2, 1, ["b"]), rule(3, 2, 1, ["c"]),
        rule(4, 1, 1, ["d"]), rule(5, 2, 1, ["e"], text="old text")])
    snap = RuleSnapshot(iteration=2, capacity=10, rules=[
        rule(1, 4, 1, ["a", "x"]),  # upvoted: rescored
        rule(5, 3, 1, ["e"], text="new text"),  # edited
        rule(6, 4, 2, ["b", "c", "y"]),  # merge of R2 + R3
        rule(7, 2, 2, ["z"]),  # added
    ])  # R4 downvoted away: removed
    props = [Proposal(op="UPVOTE", rule_ids=["R1"]), Proposal(op="EDIT", rule_ids=["R5"]),
             Proposal(op="MERGE", rule_ids=["R2", "R3"], text="m"),
             Proposal(op="ADD", text="rule 7"), Proposal(op="DOWNVOTE", rule_ids=["R4"]),
             Proposal(op="MERGE", rule_ids=["R1", "R7"], text="x", accepted=False)]
    for p in (props, None):  # from the proposals, and from provenance alone
        ops = pool_ops(prev, snap, p)
        assert (ops.size, ops.added, ops.edited, ops.merged, ops.removed, ops.rescored) == \
            (4, 1, 1, 1, 1, 1), p is None


def test_top_rules_age_and_evidence(tmp_path):
    snap = RuleSnapshot(iteration=3, capacity=5, rules=[rule(1, 2, 1, ["a", "a", "b"]),
                                                        rule(2, 5, 3, [])])
    rows = top_rules(snap)
    assert [(r.id, r.age, r.trajectories) for r in rows] == [("R2", 0, 0), ("R1", 2, 2)]


def test_build_writes_markdown_html_pngs_and_csv(tmp_path):
    write_run(tmp_path)
    build(tmp_path, [0, 1], "test run")
    out = tmp_path / paths.REPORTS
    for name in ("index.md", "index.html", "iterations.csv", *FIGURES):
        assert (out / name).stat().st_size > 0, name
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG"
    md = (out / "index.md").read_text()
    assert "4/6 = 0.67 (0.30-0.90)" in md  # Wilson for 4/6
    assert "p = 0.25" in md and "not significant" in md
    assert "shrank" in md
    html = (out / "index.html").read_text()
    # methods.png is written always (the files are the same for every run) but shown only
    # with experiments to compare
    assert html.count("data:image/png;base64,") == len(FIGURES) - 1
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)  # opens offline
    assert "<link" not in html and "<script" not in html
    rows = list(csv.DictReader((out / "iterations.csv").open()))
    assert rows[1]["expert_top1"] == "0.75" and rows[1]["expert_top1_none"] == "0.5"
    assert rows[1]["rules_added"] == "2"


def test_build_degrades_for_an_older_run(tmp_path):
    write_run(tmp_path, with_states=False, with_proposals=False)
    for i in (0, 1):
        (tmp_path / paths.eval_file(i)).unlink()
    (tmp_path / paths.train_stats_file(1)).unlink()
    build(tmp_path, [0, 1], "old run")
    md = (tmp_path / paths.REPORTS / "index.md").read_text()
    assert "older run" in md and "no paired test" in md
    assert "0.75" in md  # expert_top1 from the metrics, without an interval


def test_iterations_learned_but_not_evaluated_still_show_their_pool_and_training(tmp_path):
    write_run(tmp_path)
    (tmp_path / paths.metrics_file(1)).unlink()  # eval_iterations [0]: 1 learned, not evaluated
    rows = build(tmp_path, [0], "subset", learned=[0, 1])
    assert [r["iteration"] for r in rows] == [0]
    md = (tmp_path / paths.REPORTS / "index.md").read_text()
    pool = md.split("## Rule pool")[1].split("##")[0]
    assert re.search(r"^\| 1 \| 2 \| 2 \| 0 \| 0 \| 0 \|", pool, re.M)  # 2 rules added at 1
    assert "Top rules after iteration 1" in md
    training = md.split("## Policy updates")[1].split("##")[0]
    assert re.search(r"^\| 1 \| finetune \| - \| 0\.500 \|", training, re.M)


def test_missing_metrics_name_the_file(tmp_path):
    write_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="metrics/iter_2.json"):
        build(tmp_path, [0, 1, 2], "x")


def test_document_renders_the_same_blocks_twice():
    blocks = [Heading("T", 1), Text("a < b"), Table(["x", "y"], [["1", "2|3"]]),
              Figure("f.png", "fig")]
    md = to_markdown(blocks)
    assert md.startswith("# T\n") and "| 1 | 2\\|3 |" in md and "![fig](f.png)" in md
    html = to_html(blocks, "T", {"f.png": b"\x89PNG"})
    assert "a &lt; b" in html and "data:image/png;base64,iVBORw==" in html
    assert "figure not available" in to_html(blocks, "T", {})


def test_states_file_schema_error_names_the_file(tmp_path):
    write_run(tmp_path)
    (tmp_path / paths.expert_states_file(1)).write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="expert_states.json: not a valid ExpertStates"):
        load_run(workspace(tmp_path), [1])


def test_webshop_score_interval_and_paired_score():
    from jerp.report.load import EvalGame, IterationData

    rewards_a = [0.0, 0.5, 0.5, 1.0]
    rewards_b = [0.5, 0.75, 0.5, 1.0]
    ga = [EvalGame(f"g{i}", "t", r == 1.0, r) for i, r in enumerate(rewards_a)]
    gb = [EvalGame(f"g{i}", "t", r == 1.0, r) for i, r in enumerate(rewards_b)]
    a = IterationData(0, {"episodes": 4}, games=ga)
    b = IterationData(1, {"episodes": 4}, games=gb)
    s = analysis.summarize(a)
    assert s.score.value == 50.0  # mean reward x 100
    assert 0.0 <= s.score.low <= 50.0 <= s.score.high <= 100.0
    results = {r.what.split(",")[0]: r for r in analysis.compare_iterations(a, b)}
    assert results["score"].diff == pytest.approx((0.5 + 0.25) / 4 * 100)
    assert results["score"].pairs == 4
    assert "eval success (exact McNemar)" in {r.what for r in results.values()}


def test_methods_figure_has_a_row_per_environment():
    """Runs on WebShop play other games than ALFWorld's: their curves get their own row."""
    import struct

    from jerp.report import plots
    from jerp.report.experiments import MethodCurve

    def curve(env: str) -> MethodCurve:
        rates = {i: analysis.Rate(0.2, 1, 5, 0.04, 0.62) for i in (0, 1)}
        return MethodCurve(f"m ({env})", rates, rates, env)

    def height(png: bytes) -> int:
        return struct.unpack(">II", png[16:24])[1]  # the PNG header's IHDR: width, height

    one = height(plots.methods([curve("alfworld"), curve("alfworld")]))
    two = height(plots.methods([curve("alfworld"), curve("webshop")]))
    assert two > 1.8 * one


def test_a_run_evaluated_once_is_drawn_flat_across_the_iterations(monkeypatch):
    """react and reflexion learn nothing between iterations and are evaluated at 0 only:
    beside runs of iterations 0-3 their value is a dashed line over 0-3, so labelled."""
    from jerp.report import plots
    from jerp.report.experiments import MethodCurve

    figs = []
    monkeypatch.setattr(plots, "_png", lambda fig: figs.append(fig) or b"")
    r = analysis.Rate(0.3, 3, 10, 0.1, 0.6)
    plots.methods([MethodCurve("jerp", {i: r for i in range(4)}, {i: r for i in range(4)}),
                   MethodCurve("react", {0: r}, {0: r})])
    top1 = figs[0].axes[0]
    assert top1.get_legend_handles_labels()[1] == ["jerp", "react (evaluated once)"]
    [flat] = [c for c in top1.collections if c.get_linestyle()[0][1]]  # the dashed one
    (x0, y0), (x1, y1) = flat.get_segments()[0]
    assert (x0, x1) == (0, 3) and y0 == y1 == 0.3
