"""Helpers for fault tests: a tiny real project, and running one stage's flow in it.

Fault tests run stages the way `dvc repro` does (`sh flows/python flows/<stage>.py`,
in a fresh process, with the project's own Prefect home and MLflow store), so what
they find in those stores is what a user would find.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from jerp import paths
from jerp.memory.pool import empty_pool
from jerp.presets import render as render_preset
from jerp.records import StepRecord, Trajectory, write_jsonl, write_snapshot, write_trajectories

BIN = Path(sys.executable).parent
GAME = "train/pick_heat_then_place_in_recep-Mug-None-CoffeeMachine-24/trial_T20190907_144750_235743"
# Settings that point at the developer's stores; a project copy gets its own.
RUN_STATE_VARS = ("PREFECT_HOME", "MLFLOW_TRACKING_URI", "PREFECT_API_URL", "VIRTUAL_ENV")


def stage_env(**extra: str) -> dict[str, str]:
    """This process's environment without its run-state settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in RUN_STATE_VARS}
    return {**env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}


def run_stage(proj: Path, stage: str, *args: str, env: dict | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """One stage's flow as DVC runs it; never raises on a non-zero exit."""
    return subprocess.run(["sh", "flows/python", f"flows/{stage}.py", *args], cwd=proj,
                          env=env or stage_env(), capture_output=True, text=True,
                          timeout=timeout)


def _traj(tid: str, actions: list[str], won: bool, source: str = "rollout") -> Trajectory:
    return Trajectory(
        traj_id=tid, task_id=GAME, env="alfworld", split="train",
        task_type="pick_heat_then_place_in_recep", goal="put a hot mug in coffeemachine.",
        steps=[StepRecord(observation="...", admissible_count=9, action=a) for a in actions],
        reward=float(won), won=won, n_steps=len(actions), source=source)


def write_reflect_inputs(proj: Path, alf_root: Path) -> None:
    """What reflect@1 reads: references, rollouts 1 (one failure, one win), pool 0, wins 0."""
    game = alf_root / "json_2.1.1" / GAME / "game.tw-pddl"
    walk = json.loads(game.read_text())["walkthrough"]
    no_heat = [a for a in walk if not a.startswith("heat ")]
    write_trajectories(proj / paths.references_file(), [_traj(f"ref:{GAME}", walk, True,
                                                              "reference")])
    write_trajectories(proj / paths.rollouts_file(1), [
        _traj("roll1:a#0", no_heat, False), _traj("roll1:a#1", walk, True)])
    write_snapshot(proj / paths.rules_file(0), empty_pool(10))
    write_jsonl(proj / paths.wins_file(0), [])


def make_project(dest: Path, root: Path, alf_root: Path, model_cache: Path,
                 **overrides: dict) -> Path:
    """A copy of the project at dest on the tiny preset, overrides merged into its params
    (one level deep: rules={"reflector": "llm"})."""
    proj = dest
    proj.mkdir(parents=True)
    for item in ("dvc.yaml", "flows", "src", ".dvcignore"):
        src = root / item
        if src.is_dir():
            shutil.copytree(src, proj / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, proj / item)
    params = yaml.safe_load(render_preset(root, "tiny"))  # presets/base.yaml + tiny.yaml
    params["env"]["data_dir"] = str(alf_root)
    params["policy"]["cache_dir"] = str(model_cache)
    for section, values in overrides.items():
        params[section].update(values)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (proj / ".venv").symlink_to(Path(sys.prefix))
    return proj


class Endpoint:
    """A stand-in OpenAI-compatible chat endpoint on 127.0.0.1 for the LLM reflector.

    It answers every request with one ADD operation or, after `hold()`, keeps the
    request open until `release` is set: a stage waiting on it is known to be in the
    middle of its flow run, so a kill lands there at a moment the test knows, not
    after a guessed sleep. `asked` is set by the first request after `hold()`;
    `seen_auth` keeps every request's Authorization header (the secrets test)."""

    def __init__(self) -> None:
        self.held = False
        self.seen_auth: list[str] = []
        self.asked = threading.Event()
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def hold(self) -> None:
        self.asked, self.release = threading.Event(), threading.Event()
        self.held = True

    def answer(self) -> None:
        """Stop holding: release a held request (its client is gone) and answer the next."""
        self.held = False
        self.release.set()

    def close(self) -> None:
        self.answer()
        self.server.shutdown()
        self.server.server_close()


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            endpoint.seen_auth.append(self.headers.get("Authorization", ""))
            if endpoint.held:
                release = endpoint.release
                endpoint.asked.set()
                release.wait(300)
                return
            body = json.dumps({"choices": [{"message": {"content": "ADD: Heat it first."}}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args) -> None:
            pass

    return Handler
