"""ALFWorld's hand-coded searching expert, driven without `traj_data.json`.

The expert behind ALFWorld's TextDAgger agent (`HandCodedTWAgent`) searches for
objects instead of going straight to them, so imitating it teaches a policy to
search; the games' walkthroughs are oracle plans that do not. Upstream reads the
task parameters from `traj_data.json`, which the shared games lack: the task
folder's name carries them (`task_params`). The expert keeps its own state from
the actions and feedback it is shown, so it can label the state of any trajectory,
the policy's own included (DAgger).

Two changes from upstream, each in a subclass (the package is not patched):
- the game's command for placing an object is `move X to Y`, while upstream's state
  tracking pops the inventory only on `put`: after placing the first object of
  `pick_two_obj_and_place` it kept "holding" it and looped. `move` counts as `put`.
- its random choices (which of several matching objects to take, a random command
  when it would repeat itself) come from the expert's own seeded stream, never
  from the process-wide `random` state, so a label does not depend on what else
  ran in the process.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# The task types, the first field of a game folder's name (alfworld.py's too).
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
GAME_PREFIX_FIELDS = ("task_type", "object_target", "mrecep_target", "parent_target", "scene")


class TaskFolderError(ValueError):
    """A task folder name that does not carry the expert's parameters."""


@dataclass(frozen=True)
class TaskParams:
    """What the expert needs to know of a task: its type and the objects it names."""

    task_type: str
    object_target: str
    parent_target: str  # the target receptacle; "" for look_at_obj_in_light
    toggle_target: str  # the lamp of look_at_obj_in_light; "" otherwise
    mrecep_target: str  # the object's container (e.g. a mug holding it); "" when None
    object_sliced: bool = False

    def as_expert_dict(self) -> dict:
        """The dict upstream builds from traj_data.json's pddl_params."""
        return {"task_type": self.task_type, "object_target": self.object_target,
                "parent_target": self.parent_target, "toggle_target": self.toggle_target,
                "mrecep_target": self.mrecep_target, "object_sliced": self.object_sliced}


def task_params(task_id: str) -> TaskParams:
    """Parse `{type}-{object}-{container or None}-{target}-{scene}` (a task id's
    folder part: `pick_two_obj_and_place-CD-None-Safe-308/trial_...` works too).

    For `look_at_obj_in_light` the target field is the lamp (a toggle, not a
    receptacle). Object names are lower-cased as the engine names them; a sliced
    object (`AppleSliced`) is the object itself, sliced.
    """
    folder = [part for part in task_id.split("/") if "-" in part]
    if not folder:
        raise TaskFolderError(f"{task_id!r}: no task folder "
                              f"`{'-'.join('{' + f + '}' for f in GAME_PREFIX_FIELDS)}` in it")
    fields = folder[-1].split("-")
    if len(fields) != len(GAME_PREFIX_FIELDS):
        raise TaskFolderError(f"{task_id!r}: a task folder has {len(GAME_PREFIX_FIELDS)} "
                              f"fields separated by '-' ({', '.join(GAME_PREFIX_FIELDS)}), "
                              f"this one {len(fields)}")
    ttype, obj, mrecep, target, _scene = fields
    if ttype not in TASK_TYPES:
        raise TaskFolderError(f"{task_id!r}: unknown task type {ttype!r}; "
                              f"accepted: {list(TASK_TYPES)}")
    sliced = obj.endswith("Sliced")
    obj = obj.removesuffix("Sliced").lower()
    mrecep = "" if mrecep == "None" else mrecep.lower()
    lamp = ttype == "look_at_obj_in_light"
    return TaskParams(task_type=ttype, object_target=obj,
                      parent_target="" if lamp else target.lower(),
                      toggle_target=target.lower() if lamp else "",
                      mrecep_target=mrecep, object_sliced=sliced)


def _fixed_policy(base: type) -> type:
    """`base` (one of upstream's TW policies) with `move` tracked as `put`."""

    def update_state_tracking(self, game_state: dict, last_action: str) -> None:
        if last_action.startswith("move "):
            last_action = "put " + last_action[len("move "):]
        base.update_state_tracking(self, game_state, last_action)

    return type(base.__name__, (base,), {"update_state_tracking": update_state_tracking})


class _SeededRandom:
    """Runs a call with the module `random` state swapped for the expert's own."""

    def __init__(self, seed: int):
        self._state = random.Random(seed).getstate()

    def call(self, fn, *args):
        outer = random.getstate()
        random.setstate(self._state)
        try:
            return fn(*args)
        finally:
            self._state = random.getstate()
            random.setstate(outer)


class Expert:
    """Follows one episode and says what the expert would do at each state.

    `start(feedback, facts, admissible)` with the game's first feedback, then
    `next(last_action, feedback, facts, admissible)` after every step, whoever chose
    the action. Both return the expert's action for the state, or None once the
    expert has given up (timed out, ran out of subgoals, or names a command the
    game does not admit).
    """

    def __init__(self, params: TaskParams, seed: int = 0, max_steps: int = 200):
        from alfworld.agents.expert.handcoded_expert import (
            HandCodedAgentFailed,
            HandCodedAgentTimeout,
        )
        from alfworld.agents.expert.handcoded_expert_tw import HandCodedTWAgent

        self._errors = (HandCodedAgentTimeout, HandCodedAgentFailed)
        agent = HandCodedTWAgent(max_steps=max_steps)
        pdict = params.as_expert_dict()
        agent.task_params = pdict
        agent.policy = _fixed_policy(agent.get_task_policy(pdict))(pdict, max_steps=max_steps)
        self._agent = agent
        self._random = _SeededRandom(seed)
        self._stand_in: tuple[str, str] | None = None  # (command played, command meant)
        self.failed = False

    def start(self, feedback: str, facts: list, admissible: list[str]) -> str | None:
        self._agent.observe(feedback)
        # Upstream spends a first step on `look`; acting as if it had spares the step.
        return self.next("look", feedback, facts, admissible)

    def next(self, last_action: str, feedback: str, facts: list,
             admissible: list[str]) -> str | None:
        if self.failed:
            return None
        if self._stand_in and last_action == self._stand_in[0]:
            last_action = self._stand_in[1]  # track the move the stand-in made
        self._stand_in = None
        state = {"feedback": feedback, "facts": facts, "admissible_commands": admissible}
        try:
            action = self._random.call(self._agent.act, state, 0, False, last_action)
        except (*self._errors, IndexError, KeyError, ValueError):  # gave up; odd feedback
            action = None
        if action is not None and action not in admissible:
            action = self._stand_in_for(action, admissible)
        if action is None:
            self.failed = True
        return action

    def _stand_in_for(self, action: str, admissible: list[str]) -> str | None:
        """Receptacles that share a spot (`shelf 2` and `shelf 3`): the engine admits no
        `go to shelf 3` while at shelf 2, only `examine shelf 3`, which shows what
        is on it. Upstream searches on with `go to`, then stalls."""
        if action.startswith("go to "):
            examine = "examine " + action[len("go to "):]
            if examine in admissible:
                self._stand_in = (examine, action)
                return examine
        return None
