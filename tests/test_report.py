"""The report from a small recorded run: numbers, paired tests, rule evolution, offline HTML."""

from __future__ import annotations

import csv
import json
import re

import pytest
from report_fixtures import eval_metrics, rule, write_run

from jerp import paths, stats
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
    s = analysis.summarize(analysis.IterationData(0, None, states=[state]))
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


def test_success_by_type_counts_each_side_on_the_games_both_played():
    """Per type and in all, on the shared games only: where a paired difference comes from."""
    from jerp.report.load import EvalGame

    def games(spec):
        return [EvalGame(g, t, won, float(won)) for g, t, won in spec]

    a = games([("p1", "put", True), ("p2", "put", False), ("h1", "heat", False),
               ("h2", "heat", True), ("x", "heat", True)])  # x: only A played it
    b = games([("h2", "heat", False), ("h1", "heat", True), ("p2", "put", True),
               ("p1", "put", True), ("y", "put", True)])  # y: only B
    rows = {r.task_type: r for r in analysis.success_by_type(a, b)}
    assert list(rows) == ["put", "heat", "all"]
    assert rows["put"] == analysis.TypeSplit("put", 2, 1, 2, 0, 1)
    assert rows["heat"] == analysis.TypeSplit("heat", 2, 1, 1, 1, 1)
    assert rows["all"] == analysis.TypeSplit("all", 4, 2, 3, 1, 2)
    assert analysis.success_by_type(a, games([("z", "put", True)])) == []


def test_steps_are_paired_on_the_games_both_won():
    """A lost game, or one without recorded steps, carries no steps to a win."""
    from jerp.report.load import EvalGame

    a = [EvalGame("g1", "t", True, 1.0, steps=10), EvalGame("g2", "t", True, 1.0, steps=20),
         EvalGame("g3", "t", False, 0.0, steps=30), EvalGame("g4", "t", True, 1.0)]
    b = [EvalGame("g1", "t", True, 1.0, steps=6), EvalGame("g2", "t", True, 1.0, steps=14),
         EvalGame("g3", "t", True, 1.0, steps=5), EvalGame("g4", "t", True, 1.0, steps=3)]
    r = analysis.paired_steps(a, b)
    assert (r.pairs, r.a, r.b, r.diff) == (2, 15.0, 10.0, -5.0)
    assert r.what.startswith("steps to a win, on the games both won")
    assert analysis.paired_steps(a[:1], b[:1]) is None  # one pair: no interval


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
    assert "was not positive at either" in text and "moved" not in text
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
    # the template's structure: one line per block and row, numbers right-aligned
    assert "<h1>T</h1>\n<p>a &lt; b</p>\n" in html and html.endswith("</body></html>\n")
    assert "<tr><td>1</td><td class=num>2|3</td></tr>" in html
    assert '<img src="data:image/png;base64,iVBORw==" alt="fig">' in html
    # autoescaped everywhere: a title, a cell, an alt text cannot inject markup
    evil = '<script>"x"</script>'
    page = to_html([Table([evil], [[evil]]), Figure("f.png", evil)], evil, {"f.png": b"x"})
    assert "<script" not in page and page.count("&lt;script&gt;") == 4


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
    a = IterationData(0, eval_metrics(episodes=4), games=ga)
    b = IterationData(1, eval_metrics(episodes=4, iteration=1), games=gb)
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


# ---------------------------------------------------------------- success, ceiling, agreement

NEW_KEYS = {"episodes": 12, "success": 0.1667, "success_ci": [0.047, 0.448],
            "expert_agreement": 0.4, "expert_agreement_ci": [0.3094, 0.498],
            "expert_labels": 100}
# the searching expert wins g0-g4 of g0-g5: put (g0, g2, g4) 3/3, heat (g1, g3, g5) 2/3
CEILING_WINS = [True, True, True, True, True, False]
CEILING = {"episodes": 6, "success": 0.8333, "success_ci": [0.4365, 0.9699],
           "success_by_type": {"pick_and_place_simple": 1.0,
                               "pick_heat_then_place_in_recep": 0.6667}, "mean_steps": 5.0,
           "score": 83.33, "invalid_action_rate": 0.0}
DEMOS = {"asked": "expert", "games": 7, "won": 7, "by": {"expert": 5, "walkthrough": 2},
         "mean_steps": 14.5, "fallbacks": 2,
         "expert_by_type": {"pick_heat_then_place_in_recep": {
             "games": 4, "expert_won": 3, "expert_mean_steps": 17.25}}}


def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}")[1].split("\n## ")[0]


def test_metrics_with_and_without_the_new_keys_render():
    """A run recording success_ci and expert agreement shows both; an older one (episodes
    and success only) gets the Wilson interval computed and no agreement column."""
    from jerp.report.build import document

    new = analysis.summarize(analysis.IterationData(0, eval_metrics(**NEW_KEYS)))
    assert (new.success.k, new.success.n) == (2, 12)
    a = new.agreement
    assert (a.value, a.k, a.n, a.low, a.high) == (0.4, 40, 100, 0.3094, 0.498)
    old = eval_metrics(episodes=12, success=0.1667)
    assert analysis.summarize(analysis.IterationData(0, old)).agreement is None

    md = to_markdown(document([analysis.IterationData(0, eval_metrics(**NEW_KEYS))], "new")[0])
    success = _section(md, "Eval success")
    assert "| iteration | success (95% CI) | expert agreement (95% CI) |" in success
    assert "| 0 | 2/12 = 0.17 (0.05-0.45) | 40/100 = 0.40 (0.31-0.50) |" in success
    assert "expert agreement (its decisions equal to the expert's) 40/100" in success
    expert = _section(md, "Expert agreement and walkthrough top-1")
    assert "| 0 | 40/100 = 0.400 (0.309-0.498) | - |" in expert
    md_old = to_markdown(document([analysis.IterationData(0, old)], "old")[0])
    success = _section(md_old, "Eval success")
    assert "| 0 | 2/12 = 0.17 (0.05-0.45) |" in success and "agreement" not in success
    assert "no expert_agreement nor expert_top1" in md_old
    assert "searching expert (ceiling)" not in md_old


def _write_references(root, dagger: bool = False) -> None:
    from report_fixtures import TYPES, game

    (root / paths.references_stats_file()).write_text(
        json.dumps({"demos": DEMOS, "ceiling": CEILING}))
    (root / paths.ceiling_file()).write_text("".join(
        game(f"g{j}", TYPES[j % 2], w, 0).model_dump_json() + "\n"
        for j, w in enumerate(CEILING_WINS)))
    for i in (0, 1):
        m = json.loads((root / paths.metrics_file(i)).read_text())
        (root / paths.metrics_file(i)).write_text(json.dumps(m | {
            "expert_agreement": 0.25 + 0.25 * i, "expert_agreement_ci": [0.1, 0.6],
            "expert_labels": 20}))
    if dagger:
        t = json.loads((root / paths.train_stats_file(0)).read_text())
        t["dagger"] = [{"round": 1, "games": 4, "won": 1, "labels": 30,
                        "expert_agreement": 0.5, "ce_first": 1.2, "ce_last": 0.8}]
        (root / paths.train_stats_file(0)).write_text(json.dumps(t))


def test_ceiling_row_agreement_and_demonstrations_from_references(tmp_path):
    write_run(tmp_path)
    _write_references(tmp_path, dagger=True)
    rows = build(tmp_path, [0, 1], "with references")
    md = (tmp_path / paths.REPORTS / "index.md").read_text()
    success = _section(md, "Eval success")
    # the ceiling counted from data/ceiling.jsonl: 5/6 overall, 3/3 put, 2/3 heat
    assert ("| searching expert (ceiling) | 5/6 = 0.83 (0.44-0.97) | - | 3/3 = 1.00 (0.44-1.00)"
            " | 2/3 = 0.67 (0.21-0.94) |") in success
    assert "| 1 | 4/6 = 0.67 (0.30-0.90) | 10/20 = 0.50 (0.10-0.60) |" in success
    assert success.index("| 1 |") < success.index("| searching expert")  # the last row
    assert "the searching expert (ceiling) 5/6 = 0.83 (0.44-0.97) on the same games" in success
    demos = _section(md, "Demonstrations")
    assert "7 train games" in demos and "5 by the searching expert, 2 by the walkthrough" in demos
    assert "(2 fallbacks where the expert did not win)" in demos
    assert "| heat | 4 | 3/4 = 0.75 (0.30-0.95) | 17.2 |" in demos
    assert "| 1 | 4 | 1/4 = 0.25 (0.05-0.70) | 30 | 15/30 = 0.500" in demos  # DAgger round
    assert [r["ceiling_success"] for r in rows] == [pytest.approx(5 / 6)] * 2
    assert [r["expert_agreement"] for r in rows] == [0.25, 0.5]


def test_no_references_no_ceiling_row(tmp_path):
    write_run(tmp_path)
    rows = build(tmp_path, [0, 1], "no references")
    md = (tmp_path / paths.REPORTS / "index.md").read_text()
    assert "searching expert (ceiling)" not in md and "DAgger" not in md
    assert "no metrics/references.json" in _section(md, "Demonstrations")
    assert rows[0]["ceiling_success"] is None and rows[0]["expert_agreement"] is None


def test_success_plot_draws_the_ceiling_and_expert_plot_the_agreement(monkeypatch):
    from jerp.report import plots

    figs = []
    monkeypatch.setattr(plots, "_png", lambda fig: figs.append(fig) or b"")
    rows = [analysis.summarize(analysis.IterationData(i, eval_metrics(**NEW_KEYS, iteration=i)))
            for i in (0, 1)]
    top = analysis.IterationSummary(-1, analysis.Rate.of(5, 6), {})
    plots.success(rows, "t", top)
    ax = figs[-1].axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["searching expert (ceiling)", "eval success"]
    [line] = [ln for ln in ax.lines if ln.get_label() == "searching expert (ceiling)"]
    assert line.get_linestyle() == "--" and list(line.get_ydata()) == [5 / 6, 5 / 6]
    assert ax.containers[0].has_yerr  # success with its Wilson interval
    plots.success(rows, "t")
    assert "searching expert (ceiling)" not in figs[-1].axes[0].get_legend_handles_labels()[1]
    plots.expert(rows)
    labels = figs[-1].axes[0].get_legend_handles_labels()[1]
    assert labels == ["expert agreement: own decisions = expert's (95%, games resampled)"]


def test_dagger_rounds_continue_the_warm_start_loss_curve():
    """Each DAgger round restarts its step count: laid after the round before, not over it."""
    from jerp.metrics_schema import LossPoint
    from jerp.report.plots import _steps

    curve = [LossPoint(**p) for p in ({"step": 1}, {"step": 2}, {"step": 1, "round": 1},
                                      {"step": 2, "round": 1}, {"step": 1, "round": 2})]
    assert _steps(curve, 0) == [1, 2, 3, 4, 5]
    assert _steps(curve[:2], 10) == [11, 12]


def test_a_reflexion_run_reports_success_at_1_and_labels_success_at_k(tmp_path):
    """eval.jsonl with every trial: the success table counts first attempts, a note gives
    success@2 after the retries (g1 and g3, lost at first, won at the second trial)."""
    from report_fixtures import TYPES, game

    from jerp.metrics_schema import write_record

    write_run(tmp_path)
    first = [game(f"g{j}", TYPES[j % 2], j == 0, 1) for j in range(6)]
    retry = [game(f"g{j}", TYPES[j % 2], j in (1, 3), 1).model_copy(update={"trial": 1})
             for j in range(1, 6)]
    (tmp_path / paths.eval_file(1)).write_text(
        "".join(t.model_dump_json() + "\n" for t in first + retry))
    write_record(tmp_path / paths.metrics_file(1), eval_metrics(
        episodes=6, success=0.1667, iteration=1, success_at={"1": 0.1667, "2": 0.5}))
    [d] = load_run(workspace(tmp_path), [1])
    assert (analysis.summarize(d).success.k, analysis.summarize(d).trials) == (1, 1)
    at_k = analysis.summarize(d, at_k=True)
    assert (at_k.success.k, at_k.success.n, at_k.trials) == (3, 6, 2)
    build(tmp_path, [0, 1], "reflexion")
    success = _section((tmp_path / paths.REPORTS / "index.md").read_text(), "Eval success")
    assert "| 1 | 1/6 = 0.17 (0.03-0.56) |" in success
    assert "After Reflexion's retries: iteration 1: success@2 3/6 = 0.50" in success


def test_paired_states_resample_games():
    """Three states of game x, one of game y: the bootstrap draws whole games, so every
    resampled difference is 0 (y, y), 3/4 (x, y) or 1 (x, x), and the pairs needed are
    counted in games."""
    def ranks(first: list[bool]) -> list[StateRank]:
        return [StateRank(task_id=g, step=k, rank={"shown": 1 if won else 2})
                for k, (g, won) in enumerate(zip("xxxy", first, strict=True))]

    r = analysis.paired_states(ranks([False] * 4), ranks([True, True, True, False]))
    assert (r.pairs, r.games, r.diff) == (4, 2, 0.75)
    assert (r.low, r.high) == (0.0, 1.0)
    assert r.needed == stats.pairs_needed([1.0, 0.0])  # per-game mean differences
    text = r.sentence("A", "B")
    assert "on the same 4 reference states of 2 games (games resampled)" in text
    assert f"about {r.needed} paired games" in text
    # one game: nothing to resample, no test
    assert analysis.paired_states(ranks([False] * 4)[:3], ranks([True] * 4)[:3]) is None


def test_agreement_by_kind_table_sums_each_iteration_games(tmp_path):
    """The expert section splits agreement by the expert's action: each iteration's first
    attempts summed over games (three games, two labelled steps and one unlabelled each;
    at iteration 0 the policy goes elsewhere than the expert)."""
    from report_fixtures import TYPES, game

    from jerp.records import StepRecord

    write_run(tmp_path)
    for it in (0, 1):
        labels = ["go to a" if it else "go to b", "take x 1 from a", None]
        steps = [StepRecord(observation="o", admissible_count=3, action=a, expert=x)
                 for a, x in zip(["go to a", "take x 1 from a", "look"], labels, strict=True)]
        ts = [game(f"g{j}", TYPES[j % 2], j == 0, it).model_copy(update={"steps": steps})
              for j in range(3)]
        (tmp_path / paths.eval_file(it)).write_text(
            "".join(t.model_dump_json() + "\n" for t in ts))
    [d0, d1] = load_run(workspace(tmp_path), [0, 1])
    assert analysis.summarize(d1).agreement_by_kind == {"go to": (3, 3), "take": (3, 3)}
    build(tmp_path, [0, 1], "kinds")
    md = (tmp_path / paths.REPORTS / "index.md").read_text()
    assert "| 0 | 0.00 (0/3) | 1.00 (3/3) |" in md
    assert "| 1 | 1.00 (3/3) | 1.00 (3/3) |" in md


def _stage(params=None, deps=(), outs=()):
    return {"cmd": "x", "params": {"params.yaml": params} if params else {},
            "deps": [{"path": d} for d in deps], "outs": [{"path": o} for o in outs]}


# A run's dvc.lock in miniature: iteration 1 and 2 of rollout -> finetune -> evaluate.
LOCK = {"stages": {
    "rollout@1": _stage({"rollout.k": 12}, outs=["data/iter_1/rollouts.jsonl"]),
    "finetune@1": _stage(deps=["data/iter_1/rollouts.jsonl"], outs=["data/iter_1/adapter"]),
    "evaluate@1": _stage({"env": {"max_steps": 30}}, deps=["data/iter_1/adapter"],
                         outs=["metrics/iter_1.json"]),
    "rollout@2": _stage({"rollout.k": 0}, deps=["data/iter_1/adapter"],
                        outs=["data/iter_2/rollouts.jsonl"]),
    "finetune@2": _stage(deps=["data/iter_2/rollouts.jsonl"], outs=["data/iter_2/adapter"]),
    "evaluate@2": _stage({"env": {"max_steps": 30}}, deps=["data/iter_2/adapter/adapter.json"],
                         outs=["metrics/iter_2.json"]),
}}


def test_stale_stages_are_those_run_under_other_params_and_what_follows_them():
    """`dvc exp run -S rollout.k=12 evaluate@1`: iteration 2 keeps the parent's rollout.k
    (0), so it and everything after it is stale; a file inside a stale folder counts."""
    from jerp.report.load import stale_stages

    assert stale_stages(LOCK, {"rollout": {"k": 12}, "env": {"max_steps": 30}}) == {
        "rollout@2", "finetune@2", "evaluate@2"}
    everything = {"rollout": {"k": 0}, "env": {"max_steps": 30}}  # iteration 1 is the stale one
    assert stale_stages(LOCK, everything) == set(LOCK["stages"])
    assert stale_stages(LOCK, {"rollout": {"k": 12}, "env": {"max_steps": 50}}) == {
        "evaluate@1", "rollout@2", "finetune@2", "evaluate@2"}
    assert stale_stages({}, everything) == set()


def test_a_stage_that_ran_on_other_outputs_than_its_producer_recorded_is_stale():
    """`dvc exp run -S finetune.lr=... evaluate@2`: finetune@1 re-ran (new adapter hash),
    evaluate@1 kept the parent's entry, whose dep is the parent's adapter: it and what
    follows it are stale, though no param of theirs changed."""
    from jerp.report.load import stale_stages

    lock = {"stages": {
        "finetune@1": _stage(outs=["data/iter_1/adapter"]),
        "evaluate@1": _stage(deps=["data/iter_1/adapter"], outs=["metrics/iter_1.json"]),
        "finetune@2": _stage(deps=["data/iter_1/adapter"], outs=["data/iter_2/adapter"]),
        "evaluate@2": _stage(deps=["data/iter_2/adapter"], outs=["metrics/iter_2.json"]),
        "report": _stage(deps=["metrics/iter_1.json", "metrics/iter_2.json"]),
    }}
    hashes = {"finetune@1": {"data/iter_1/adapter": "new.dir"},
              "evaluate@1": {"data/iter_1/adapter": "old.dir", "metrics/iter_1.json": "m1"},
              "finetune@2": {"data/iter_1/adapter": "new.dir", "data/iter_2/adapter": "b.dir"},
              "evaluate@2": {"data/iter_2/adapter": "b.dir", "metrics/iter_2.json": "m2"},
              "report": {"metrics/iter_1.json": "m1", "metrics/iter_2.json": "m2"}}
    for name, st in lock["stages"].items():
        for entry in (*st["deps"], *st["outs"]):
            entry["md5"] = hashes[name][entry["path"]]
    assert stale_stages(lock, {}) == {"evaluate@1", "report"}
    lock["stages"]["evaluate@1"]["deps"][0]["md5"] = "new.dir"  # re-run on the new adapter
    assert stale_stages(lock, {}) == set()


def test_a_partial_experiment_is_read_only_where_it_ran_under_its_params(tmp_path):
    """Its parent's later metrics are not its own: `jerp compare` reads the iterations its
    params produced, Table II (complete=True) leaves it out with the reason."""
    import yaml

    from jerp.report import experiments

    write_run(tmp_path)
    lock = {"stages": {f"evaluate@{i}": _stage({"rollout.k": k}, outs=[f"metrics/iter_{i}.json"])
                       for i, k in ((0, 12), (1, 0))}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"rollout": {"k": 12},
                                                          "eval_iterations": [0, 1]}))
    run = experiments.load(workspace(tmp_path), "partial")
    assert [d.iteration for d in run.data] == [0]
    with pytest.raises(ValueError, match=r"iterations \[1\] were not evaluated under its"):
        experiments.load(workspace(tmp_path), "partial", complete=True)
    (tmp_path / "dvc.lock").unlink()  # nothing to tell by: every iteration
    assert [d.iteration for d in experiments.load(workspace(tmp_path), "x").data] == [0, 1]


def test_top1_and_agreement_intervals_resample_games_not_states():
    """Four games, three identical states (and three identical decisions) each: resampling
    games must give exactly the interval of one value per game, which is wider than
    Wilson's over the 12 states as if they were independent."""
    from jerp.report.load import EvalGame

    per_game = {"a": True, "b": True, "c": False, "d": False}
    states = [StateRank(task_id=g, step=k, rank={"shown": 1 if won else 2})
              for g, won in per_game.items() for k in range(3)]
    games = [EvalGame(g, "pick_and_place_simple", won, float(won),
                      {"go to": (3 if won else 0, 3)}) for g, won in per_game.items()]
    s = analysis.summarize(analysis.IterationData(0, None, games=games, states=states))
    _, lo, hi = stats.bootstrap_mean([1.0, 1.0, 0.0, 0.0], seed=0)
    for rate in (s.top1["shown"], s.agreement):
        assert (rate.k, rate.n, rate.value) == (6, 12, 0.5)
        assert (rate.low, rate.high) == (lo, hi)
    w_lo, w_hi = stats.wilson(6, 12)
    assert lo < w_lo and hi > w_hi


def test_agreement_is_paired_per_game():
    """Each game's share of decisions equal to the expert's, paired on the games both
    evaluated with labels (a game without labels is left out)."""
    from jerp.report.load import EvalGame

    def games(shares: dict[str, tuple[int, int]]) -> list[EvalGame]:
        return [EvalGame(g, "t", False, 0.0, {"go to": c} if c[1] else {})
                for g, c in shares.items()]

    a = games({"x": (1, 4), "y": (2, 4), "z": (0, 0)})
    b = games({"x": (3, 4), "y": (2, 2), "z": (1, 1)})
    r = analysis.paired_agreement(a, b)
    assert (r.pairs, r.unit, r.a, r.b) == (2, "games", 0.375, 0.875)
    assert r.diff == pytest.approx(0.5) and r.b_only is None
    assert "expert agreement per game" in r.sentence("A", "B")
    assert analysis.paired_agreement(a[:1], b[:1]) is None  # one game: nothing to resample


def test_a_difference_near_zero_does_not_name_millions_of_pairs():
    r = analysis.PairedResult("expert agreement per game (paired bootstrap)", "games", 48,
                              0.631, 0.632, 0.001, 0.99, -0.08, 0.08, needed=2_054_836)
    text = r.sentence("A", "B")
    assert "more than 100,000 paired games would be needed" in text and "2054836" not in text
