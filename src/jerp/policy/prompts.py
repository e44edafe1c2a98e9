"""Prompt assembly: task, working set of rules, a window of history, the observation.

Templates live beside the environments (envs/prompts/<env>.txt) so that each
world words its own instructions; this module only fills the slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources


@cache
def template(env: str) -> str:
    path = resources.files("jerp.envs") / "prompts" / f"{env}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template for env {env!r} at {path}")
    return path.read_text(encoding="utf-8")


@dataclass
class EpisodeContext:
    """What the agent knows in one episode; `rules` stay fixed for the episode."""

    env: str
    goal: str
    rules: list[str] = field(default_factory=list)
    history: list[tuple[str, str]] = field(default_factory=list)  # (observation, action)


def render_rules(rules: list[str]) -> str:
    if not rules:
        return ""
    return "Rules learned from experience:\n" + "".join(f"- {r}\n" for r in rules)


def build_prompt(
    ctx: EpisodeContext, observation: str, window: int, commands: list[str] | None = None
) -> str:
    recent = ctx.history[-window:] if window else []
    history = "".join(f"Observation: {o}\n> {a}\n" for o, a in recent)
    cmds = "Valid commands: " + ", ".join(commands) + "\n" if commands else ""
    return template(ctx.env).format(
        goal=ctx.goal,
        rules=render_rules(ctx.rules),
        history=history,
        observation=observation,
        commands=cmds,
    )
