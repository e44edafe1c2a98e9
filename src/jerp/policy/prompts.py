"""Prompt assembly: task, working set of rules, a memory slot, a window of history,
the observation.

Templates live beside the environments (envs/prompts/<env>.txt) so that each
world words its own instructions; this module only fills the slots.

The rendered prompt is append-only within an episode, so the policy can keep
its KV cache from step to step (policy/kvcache.py):

    header   = the template up to `{history}`: goal, working set of rules and the
               episode's first observation (ALFWorld: the room and its receptacles,
               which the history window would otherwise drop after 2h steps)
    slot     = the per-step memory slot (memory.base.render_slot: the current subgoal and the
               execution memories shown for it; "" when the episode has none)
    step i   = "Observation: <o_i>\\n>"  then  " <a_i>\\n"
    now      = "Observation: <o_t>\\n>"   (+ "Valid commands: ..." in generate mode)

The action piece " <a>\\n" is exactly a rank-mode candidate (scoring.py's
`encode_candidates`), so the chosen command's tokens join the prefix as they
were scored. With `window` = h > 0 the prompt shows the past steps from
`window_start(t, h)` on: all of them while t < 2h, then between h and 2h - 1
of them, the oldest h dropped at once every h steps, so a cached prefix is
rebuilt (from the header on) once per h steps instead of every step.
`window` = 0 shows no past step: header + current observation only.

The slot sits after the header and before the history because it changes
within an episode (when the subgoal does) while the header never does: a
changed slot keeps the header's cached tokens and re-forwards only from the
slot on (the slot, the shown steps, the observation), once per subgoal change.
An episode without a slot renders exactly as before the slot existed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources

HISTORY_SLOT = "{history}"


@cache
def template(env: str) -> str:
    path = resources.files("jerp.envs") / "prompts" / f"{env}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template for env {env!r} at {path}")
    return path.read_text(encoding="utf-8")


@cache
def split_template(env: str) -> tuple[str, str]:
    """(header part, step part) of the template, split at `{history}`.

    The step part renders the current observation; a past step is the same text
    (without commands) followed by its action, which keeps the prompt append-only.
    """
    text = template(env)
    if text.count(HISTORY_SLOT) != 1:
        raise ValueError(f"prompt template {env!r} must contain {HISTORY_SLOT} exactly once")
    head, step = text.split(HISTORY_SLOT)
    # The file's final newline is not part of the prompt: the action follows '>' on
    # the same line, as in the history blocks ("> <action>\n").
    step = step.removesuffix("\n")
    if not step.endswith(">"):
        raise ValueError(f"prompt template {env!r} must end with '>' (the action follows it)")
    return head, step


@dataclass
class EpisodeContext:
    """What the agent knows in one episode; `rules` stay fixed for the episode, `slot`
    (rendered by memory.base.render_slot) may change between steps.

    `seed` tells episodes apart for sampled decisions (independent of scheduling);
    `state` is the agent's per-episode scratch (its KV cache), opaque to others.
    """

    env: str
    goal: str
    rules: list[str] = field(default_factory=list)
    initial: str = ""  # the episode's first observation, kept in the header
    examples: list[str] = field(default_factory=list)  # ExpeL: rendered similar successes
    notes: list[str] = field(default_factory=list)  # Reflexion: notes of earlier failed trials
    slot: str = ""  # the per-step memory slot's text, after the header; "" = none
    history: list[tuple[str, str]] = field(default_factory=list)  # (observation, action)
    seed: int = 0
    state: object | None = field(default=None, repr=False, compare=False)


def render_rules(rules: list[str]) -> str:
    if not rules:
        return ""
    return "Rules learned from experience:\n" + "".join(f"- {r}\n" for r in rules)


def render_experience(examples: list[str], notes: list[str]) -> str:
    """The episode's own experience, placed after the rules in the header: ExpeL's
    successful examples of similar tasks, then Reflexion's notes on this task's
    earlier failed trials (trial t shows the notes of trials 1..t-1)."""
    out = ""
    if examples:
        out += "Successful examples of similar tasks:\n" + "".join(f"{e}\n" for e in examples)
    if notes:
        out += "Your earlier failed attempts at this task:\n" + "".join(
            f"- Trial {i}: {n}\n" for i, n in enumerate(notes, 1))
    return out


def window_start(t: int, window: int) -> int:
    """First past step shown at step t: keeps between `window` and 2*`window` - 1 steps
    (all while fewer), so the shown history changes its start once per `window` steps."""
    if window <= 0:
        return t
    return max(0, (t - window) // window * window)


def header(ctx: EpisodeContext) -> str:
    head, _ = split_template(ctx.env)
    rules = render_rules(ctx.rules) + render_experience(ctx.examples, ctx.notes)
    return head.format(goal=ctx.goal, rules=rules, initial=ctx.initial)


def observation_piece(env: str, observation: str, commands: list[str] | None = None) -> str:
    _, step = split_template(env)
    cmds = "Valid commands: " + ", ".join(commands) + "\n" if commands else ""
    return step.format(observation=observation, commands=cmds)


def action_piece(action: str) -> str:
    """Same text as a rank-mode candidate (scoring.encode_candidates)."""
    return " " + action + "\n"


def prompt_pieces(ctx: EpisodeContext, observation: str, window: int) -> list[str]:
    """The prompt as its append-only pieces: header, memory slot (if any),
    (observation, action) per shown step, the current observation. Their
    concatenation is `build_prompt`'s text."""
    pieces = [header(ctx)] + ([ctx.slot] if ctx.slot else [])
    for o, a in ctx.history[window_start(len(ctx.history), window):]:
        pieces += [observation_piece(ctx.env, o), action_piece(a)]
    pieces.append(observation_piece(ctx.env, observation))
    return pieces


def build_prompt(
    ctx: EpisodeContext, observation: str, window: int, commands: list[str] | None = None
) -> str:
    pieces = prompt_pieces(ctx, observation, window)
    if commands:
        pieces[-1] = observation_piece(ctx.env, observation, commands)
    return "".join(pieces)
