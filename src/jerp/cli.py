"""`jerp`: the pipeline's operations outside DVC.

  jerp tasks                  list the run's tasks (data/tasks.json) or a whole split
  jerp play                   play one game, showing the model's ranked choices each step
  jerp evaluate               evaluate a policy (+ pool) on a split, print the metrics
  jerp paired A.jsonl B.jsonl  two evaluations compared on the games both played
  jerp rules show|diff|history   read rule-pool snapshots across iterations and revisions
  jerp compare A B            two runs (git revisions / DVC experiments) side by side, paired
  jerp compare --table [RUN...]  the JERP paper's Table II over runs (methods as rows; runs
                              that differ only in run.seed: one row, mean ± sd); no RUN:
                              the workspace and the latest DVC experiments (this commit's, else
                              the nearest earlier commit's, labelled NAME@COMMIT)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from jerp.runtime import configure, project_root


def _params(args):
    from jerp.config import ParamsError, load_params

    try:
        return load_params(Path(args.params))
    except ParamsError as e:
        sys.exit(f"{args.params}: {e}")


def _adapter(args, cmd: str) -> Path | None:
    """--adapter resolved, or None (the base model); a clear exit where no folder is."""
    if not args.adapter:
        return None
    adapter = Path(args.adapter).resolve()
    if not adapter.is_dir():
        sys.exit(f"jerp {cmd}: no adapter folder at {adapter}")
    return adapter


def _tasks_for(p, root: Path, split: str, all_games: bool, per_type: int | None = None):
    """The run's games of `split` (data/tasks.json), every game of it (`all_games`), or
    `per_type` games per type drawn by the run's seed as prepare draws them (8 gives
    the standard preset's 48 eval games, whatever preset params.yaml is)."""
    from jerp import paths
    from jerp.envs.registry import data_root, sample_split
    from jerp.records import read_tasks

    if not all_games and per_type is None and (root / paths.tasks_file()).exists():
        return read_tasks(root / paths.tasks_file()).tasks(split)
    droot = data_root(p.env, os.environ, root)
    if all_games:
        per_type = 10**6
    return sample_split(p.env, droot, split, p.run.seed, per_type=per_type)


def cmd_tasks(args) -> None:
    p = _params(args)
    tasks = _tasks_for(p, args.root, args.split, args.all)
    for t in tasks:
        print(f"{t.task_type:34s} {t.task_id}")
    print(f"{len(tasks)} tasks ({args.split})", file=sys.stderr)


def _find_task(p, root: Path, args):
    tasks = _tasks_for(p, root, args.split, all_games=True)
    if args.task is None:
        return tasks[0]
    if args.task.isdigit():
        return tasks[int(args.task)]
    hits = [t for t in tasks if args.task in t.task_id]
    if not hits:
        sys.exit(f"no task matching {args.task!r} in split {args.split}; see `jerp tasks --all`")
    return hits[0]


def cmd_play(args) -> None:
    from jerp.agents import load_agent
    from jerp.envs.registry import make_env
    from jerp.policy.model import set_threads
    from jerp.policy.prompts import EpisodeContext

    p = _params(args)
    task = _find_task(p, args.root, args)
    set_threads(p.policy.threads)
    agent = load_agent(p, args.root, seed=p.run.seed,
                       adapter=Path(args.adapter) if args.adapter else None)
    env = make_env(p, args.root)()
    ob = env.reset(task)
    ctx = EpisodeContext(env=task.env, goal=ob.goal)
    print(f"task {task.task_id} ({task.task_type})\n{ob.text}\n")
    for step in range(1, (args.max_steps or p.env.max_steps) + 1):
        values = agent.values(ctx, ob)  # what the agent ranks by (policy.score)
        ranked = sorted(zip(values, ob.admissible, strict=True), reverse=True)
        for s, a in ranked[: args.top]:
            print(f"   {s:8.2f}  {a}")
        d = agent.decide([ctx], [ob])[0]
        res = env.step(d.action)
        print(f"[{step}] > {d.action}\n{res.observation.text}\n")
        ctx.history.append((ob.text, d.action))
        ob = res.observation
        if res.done or res.won:
            break
    print("WON" if res.won else "not won", f"after {step} steps")
    env.close()


def cmd_evaluate(args) -> None:
    from jerp.agents import policy_version, step_memory_for
    from jerp.jobs import AgentSpec, play_episodes
    from jerp.metrics import summarize
    from jerp.policy.rollout import EpisodeSpec
    from jerp.records import RuleSnapshot, read_snapshot, read_trajectories, write_trajectories

    p = _params(args)
    if args.all and args.games_per_type is not None:
        sys.exit("jerp evaluate: give --all or --games-per-type, not both")
    try:
        tasks = _tasks_for(p, args.root, args.split, all_games=args.all,
                           per_type=args.games_per_type)[: args.limit]
        against = read_trajectories(Path(args.against)) if args.against else None
        # no --rules: an empty pool, as at iteration 0 (H2R's executor still tracks subgoals)
        pool = read_snapshot(args.rules) if args.rules else RuleSnapshot.empty(p.rules.capacity)
    except (OSError, ValueError) as e:
        sys.exit(f"jerp evaluate: {e}")
    if against is not None and sorted(t.task_id for t in against) != sorted(
            t.task_id for t in tasks):
        sys.exit(f"jerp evaluate: {args.against} holds other games than this evaluation's "
                 f"{len(tasks)}: pass the --split, --games-per-type, --all and --limit it "
                 "was played with")
    rules = Path(args.rules).resolve() if pool.rules and p.rules.top_k else None
    adapter = _adapter(args, "evaluate")
    meta = dict(stage="cli", method=p.run.method, seed=p.run.seed,
                policy_version=policy_version(adapter), pool_version=str(args.rules or "none"))
    trajs = play_episodes(p, args.root, AgentSpec(adapter, seed=p.run.seed),
                          [EpisodeSpec(t) for t in tasks], meta, rules, desc="evaluate",
                          step_memory=step_memory_for(p, pool))
    if args.out:
        write_trajectories(args.out, trajs)
    print(json.dumps(summarize(trajs), indent=2))
    if against is not None:
        print("\n".join(paired_against(against, trajs, args.against, "this evaluation",
                                        p.run.seed)))


def paired_against(before: list, after: list, label_a: str, label_b: str, seed: int
                   ) -> list[str]:
    """Paired sentences, one evaluation's trajectories against another's on the games both
    played: exact McNemar on success, paired bootstrap on each game's agreement and on the
    steps of the games both won."""
    from jerp.report.analysis import paired_agreement, paired_steps, paired_success
    from jerp.report.load import eval_games

    a, b = eval_games(before), eval_games(after)
    tests = [paired_success(a, b), paired_agreement(a, b, seed=seed), paired_steps(a, b, seed)]
    return [r.sentence(label_a, label_b) for r in tests if r is not None]


def cmd_paired(args) -> None:
    """Two evaluations already played, compared on the games both hold: per task type
    (where a difference comes from), then the paired tests. A subset works too: the
    48 games of `--games-per-type 8` inside an `--all` evaluation."""
    from statistics import mean

    from jerp.records import first_trials, read_trajectories
    from jerp.report.analysis import short_type, success_by_type
    from jerp.report.load import eval_games

    try:
        a, b = (first_trials(read_trajectories(Path(f))) for f in (args.before, args.after))
    except (OSError, ValueError) as e:
        sys.exit(f"jerp paired: {e}")
    common = {t.task_id for t in a} & {t.task_id for t in b}
    if not common:
        sys.exit(f"jerp paired: {args.before} ({len(a)} games) and {args.after} ({len(b)}) "
                 "share no game: pass two `jerp evaluate --out` files (or a stage's "
                 "eval.jsonl) of the same split")
    print(f"{len(common)} games in both ({args.before} holds {len(a)}, {args.after} "
          f"{len(b)}); success@1: first attempts only")
    a, b = ([t for t in x if t.task_id in common] for x in (a, b))
    la, lb = Path(args.before).name, Path(args.after).name
    _print_table(["task type", "games", f"won: {la}", f"won: {lb}", f"only {la}",
                  f"only {lb}"],
                 [[short_type(r.task_type), str(r.games), str(r.won_a), str(r.won_b),
                   str(r.only_a), str(r.only_b)]
                  for r in success_by_type(eval_games(a), eval_games(b))])
    print(f"mean steps: {la} {mean(t.n_steps for t in a):.1f}, "
          f"{lb} {mean(t.n_steps for t in b):.1f}")
    print("\n".join(paired_against(a, b, la, lb, args.seed)))


def cmd_tune(args) -> None:
    from dataclasses import asdict

    from jerp.records import write_json
    from jerp.tuning import tune, tune_episodes

    p = _params(args)
    adapter = _adapter(args, "tune")
    histories = args.history or [p.policy.history]
    for flag, given in (("--avoid-repeats", args.avoid_repeats),
                        ("--temperatures", args.temperatures)):
        if given and not args.episodes:
            sys.exit(f"jerp tune: {flag} needs --episodes (it is a rule for acting in "
                     "episodes; reference states are ranked the same either way)")
    try:
        t = (tune_episodes(p, args.root, adapter, histories, args.games_per_type,
                           args.avoid_repeats, args.temperatures) if args.episodes else
             tune(p, args.root, adapter, histories, args.games_per_type))
    except ValueError as e:
        sys.exit(f"jerp tune: {e}")
    _print_table(*t.table())
    b = t.best()
    if args.episodes:
        print(f"On {len(t.games)} {t.split} (valid_seen) games, {t.max_steps} steps: best "
              f"history {b.history}, avoid_repeats {b.avoid_repeats}, temperature "
              f"{b.temperature:g}; params.yaml has {p.policy.history}, "
              f"{p.policy.avoid_repeats}, {p.policy.temperature:g}. A difference in games "
              "won is told apart only where McNemar's p is below 0.05.")
    else:
        print(f"On {len(t.games)} {t.split} (valid_seen) games: best history {b.history}, "
              f"score {b.score}; params.yaml has history {p.policy.history}, score "
              f"{p.policy.score}. Choices whose intervals overlap are not told apart by "
              "these games.")
    if args.json:
        write_json(Path(args.json), asdict(t))


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table()
    for h in header:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*r)
    Console(width=200).print(t)


def cmd_compare(args) -> None:
    from jerp.report import experiments as ex
    from jerp.report.analysis import MARKS

    try:
        more: list = []
        if not args.runs and args.table:  # the workspace and the latest experiments
            here = ex.load_rev(args.root, ex.WORKSPACE)
            latest, skipped = ex.latest_runs(args.root, shown=(here,))
            print("\n".join(skipped), file=sys.stderr)
            same, more = ex.split_by_games(latest, here)
            runs = [here, *same]
        else:
            runs = [ex.load_rev(args.root, rev) for rev in args.runs]
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"jerp compare: {e}")
    if args.table:
        at_k = args.success_at_k
        _print_table(*ex.table2(runs, seed=args.seed, at_k=at_k))
        print(("Success: Reflexion after its retries (success@k, so labelled), every other "
               "method's first attempt." if at_k else "Success: every method's first attempt "
               "(success@1; Reflexion's success@k with --success-at-k).")
              + f" The last three columns: this run minus {runs[0].label} on the same games "
              "(success: exact McNemar; each game's expert agreement: paired bootstrap) and "
              f"reference states (paired bootstrap), p-value; {MARKS}.")
        for games, group in more:
            print(f"\nOn other games or states ({games}), paired against {group[0].label}:")
            _print_table(*ex.table2(group, seed=args.seed, at_k=at_k))
        return
    if len(runs) != 2:
        sys.exit(f"jerp compare: give two runs to compare (got {len(runs)}), or --table for many")
    _print_table(*ex.curves(*runs))
    print("\n".join(ex.paired_sentences(*runs, seed=args.seed)))


def _add_common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jerp", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    splits = ["train", "eval_in", "eval_out"]

    t = sub.add_parser("tasks", help="list tasks")
    _add_common(t)
    t.add_argument("--split", default="eval_out", choices=splits)
    t.add_argument("--all", action="store_true", help="every game of the split, not the run's")
    t.set_defaults(func=cmd_tasks)

    pl = sub.add_parser("play", help="play one game step by step with the model's choices")
    _add_common(pl)
    pl.add_argument("task", nargs="?", help="task id (or part of it) or index; default first")
    pl.add_argument("--split", default="eval_out", choices=splits)
    pl.add_argument("--adapter", default=None, help="LoRA adapter folder")
    pl.add_argument("--max-steps", type=int, default=None)
    pl.add_argument("--top", type=int, default=5, help="ranked candidates shown per step")
    pl.set_defaults(func=cmd_play)

    ev = sub.add_parser("evaluate", help="evaluate a policy (and a rule pool) on a split")
    _add_common(ev)
    ev.add_argument("--split", default="eval_out", choices=splits)
    ev.add_argument("--all", action="store_true", help="every game of the split")
    ev.add_argument("--games-per-type", type=int, default=None,
                    help="N games per task type drawn by run.seed, as prepare draws eval "
                    "games (8: standard's 48), instead of the run's games")
    ev.add_argument("--limit", type=int, default=None, help="first N tasks only")
    ev.add_argument("--adapter", default=None)
    ev.add_argument("--rules", default=None, help="a rules.json snapshot to retrieve from")
    ev.add_argument("--out", default=None, help="write trajectories here (JSON Lines)")
    ev.add_argument("--against", default=None,
                    help="an earlier --out of the same games: paired tests against it")
    ev.set_defaults(func=cmd_evaluate)

    tu = sub.add_parser("tune", help="measure policy.score and policy.history on valid_seen "
                        "(eval_in) reference states, or episodes with --episodes; never on "
                        "the reported split")
    _add_common(tu)
    tu.add_argument("--adapter", default=None, help="LoRA adapter folder (default: the base)")
    tu.add_argument("--history", type=int, nargs="+", default=None,
                    help="history windows to compare (default: params' policy.history)")
    tu.add_argument("--games-per-type", type=int, default=2, help="valid_seen games per type")
    tu.add_argument("--episodes", action="store_true",
                    help="play episodes per history and measure success and expert agreement "
                    "(an evaluation per choice) instead of ranking walkthrough states")
    tu.add_argument("--avoid-repeats", action="store_true",
                    help="with --episodes: also play each history with policy.avoid_repeats "
                    "flipped (greedy decisions that skip commands already taken at the same "
                    "observation)")
    tu.add_argument("--temperatures", type=float, nargs="+", default=None, metavar="T",
                    help="with --episodes: also play the configured history at these acting "
                    "temperatures (policy.temperature; 0 = greedy, sampling seeded by run.seed)")
    tu.add_argument("--json", default=None, help="also write the figures here")
    tu.set_defaults(func=cmd_tune)

    pa = sub.add_parser("paired", help="two evaluations' trajectories (jerp evaluate --out) "
                        "compared on the games both played: per task type, paired tests")
    pa.add_argument("before", help="trajectories file (JSON Lines): A")
    pa.add_argument("after", help="trajectories file: B, tested against A")
    pa.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    pa.set_defaults(func=cmd_paired)

    c = sub.add_parser("compare", help="two runs side by side with paired tests, or Table II")
    c.add_argument("runs", nargs="*", metavar="RUN",
                   help="git revision or DVC experiment name; `workspace` for the workspace "
                   "(--table without RUN: the workspace and the latest experiments on HEAD's line)")
    c.add_argument("--table", action="store_true",
                   help="one row per run (the JERP paper's Table II layout)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    c.add_argument("--success-at-k", action="store_true",
                   help="--table: count Reflexion's success after its retries (success@k) "
                   "instead of every method's first attempt (success@1, the default)")
    c.set_defaults(func=cmd_compare)

    from jerp.rules_cli import add_rules_parser

    add_rules_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.root = project_root()
    configure(args.root)
    args.func(args)


if __name__ == "__main__":
    main()
