"""Reflexion's self-reflection note: what a failed attempt at a task did wrong.

Reflexion (Shinn et al. 2023) retries a failed task with a short verbal note on
the failed attempt in the prompt. An eval task has no reference to contrast
with, so the note is built from the failed trajectory alone. Two back ends, as
for the rule pool's reflectors:

* `milestone_note` (deterministic, offline default), through the environment's
  action abstraction (envs/actions.py):
  1. the milestones reached, in order (distinct, phrased as points in time);
  2. the milestone verbs the goal sentence asks for that were never done
     (`rule_verbs` of the goal: ALFWorld's "heat some egg and put it in ..."
     asks for heat and move);
  3. the longest loop at the end of the attempt (`find_loop`: a cycle of 1 to
     `MAX_PERIOD` actions repeated at least `MIN_REPEATS` times in a row);
  4. invalid commands, if any, and the last `LAST_ACTIONS` actions;
  5. one line of advice derived from 2 and 3.
* `llm_note`: the same generate callable as memory/reflect/llm.py (a local model
  or an OpenAI-compatible endpoint) asked for a two-sentence plan.

Notes are cut to `max_chars` (at a word) so a prompt cannot grow without bound.
"""

from __future__ import annotations

from collections.abc import Callable

from jerp.envs.actions import Act, ActionAbstraction
from jerp.memory.reflect.llm import render_trajectory
from jerp.records import Trajectory

Generate = Callable[[str], str]

MAX_PERIOD = 3  # longest loop cycle looked for (go A, go B, go C, go A, ...)
MIN_REPEATS = 3  # a cycle repeated this often in a row at the end is a loop
LAST_ACTIONS = 3
# The system prompt of the LLM note writer on a served model (policy/served.py).
NOTE_SYSTEM = ("You help an agent in a text world learn from a failed attempt at a task. "
               "You answer with one short note on what to do differently next time.")


def find_loop(actions: list[str]) -> tuple[list[str], int] | None:
    """The cycle the attempt ended in and how many times in a row it ran, or None.

    For each period p in 1..MAX_PERIOD, count how often the last p actions repeat
    back to back at the end; keep the cycle that covers the most steps (ties: the
    shorter period) if it repeats at least MIN_REPEATS times."""
    best: tuple[list[str], int] | None = None
    for p in range(1, MAX_PERIOD + 1):
        if len(actions) < p * MIN_REPEATS:
            break
        cycle, reps = actions[-p:], 1
        while actions[-p * (reps + 1):len(actions) - p * reps] == cycle:
            reps += 1
        if any(p % q == 0 and cycle == cycle[:q] * (p // q) for q in range(1, p)):
            continue  # (a, a) is the period-1 loop, counted already
        if reps >= MIN_REPEATS and (best is None or reps * p > len(best[0]) * best[1]):
            best = (cycle, reps)
    return best


def _distinct(phrases: list[str]) -> list[str]:
    return list(dict.fromkeys(phrases))


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 3].rsplit(" ", 1)[0] + "..."


def milestone_note(failed: Trajectory, ax: ActionAbstraction, max_chars: int) -> str:
    """The deterministic note on a failed attempt (see the module docstring)."""
    acts = ax.abstract(failed.actions, failed.goal)
    done = [a for a in acts if a.is_milestone]
    parts = [f"You failed after {len(failed.actions)} steps."]
    if done:
        parts.append("You did: " + ", ".join(_distinct([ax.short_phrase(a) for a in done]))
                     + ".")
    else:
        parts.append("You reached no milestone.")
    missed = sorted((ax.rule_verbs(failed.goal) or set()) - {a.verb for a in done})
    if missed:
        parts.append("The goal also needs: " + ", ".join(
            ax.short_phrase(Act(v, (), v, True)) for v in missed) + ".")
    loop = find_loop(failed.actions)
    if loop:
        cycle, reps = loop
        parts.append(f"You looped {reps} times over: " + "; ".join(cycle) + ".")
    invalid = sum(not s.valid for s in failed.steps)
    if invalid:
        parts.append(f"{invalid} of your commands were invalid.")
    if failed.actions:
        parts.append("Last actions: " + "; ".join(failed.actions[-LAST_ACTIONS:]) + ".")
    advice = []
    if loop:
        advice.append("do not repeat that loop; go somewhere new")
    if missed:
        advice.append("make sure you " + " and ".join(
            ax.short_phrase(Act(v, (), v, True)) for v in missed))
    if advice:
        parts.append("Next time: " + "; ".join(advice) + ".")
    return _cut(" ".join(parts), max_chars)


def note_prompt(failed: Trajectory, max_steps: int = 40) -> str:
    """What the LLM back end is asked: the failed attempt, then a plan for the next one."""
    return (f"You are an agent in a text world. This attempt at the task failed:\n\n"
            f"{render_trajectory(failed, max_steps)}\n\n"
            "In at most two sentences, say what went wrong and what you will do differently "
            "in your next attempt at this same task. Answer with the two sentences only.")


def llm_note(generate: Generate, failed: Trajectory, max_chars: int) -> str:
    """The model's note on a failed attempt, on one line and cut to `max_chars`."""
    text = " ".join(generate(note_prompt(failed)).split())
    return _cut(text, max_chars) if text else "The previous attempt failed; try another plan."
