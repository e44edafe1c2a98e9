"""Environments behind a send/recv interface, in this process or in a worker process.

A worker holds one environment for its whole life and resets it to each next
game (never an environment per game). While a worker resets (~1 s in ALFWorld)
or steps (~50 ms), the main process runs the model for the other episodes.
Workers are started with `spawn` (safe next to torch's threads), so the
factory must be picklable: envs/registry.py's `env_factory` returns a
`functools.partial`.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Protocol

from jerp.envs.base import Env


class EnvHandle(Protocol):
    def send(self, op: str, arg: object) -> None: ...

    def ready(self) -> bool: ...

    def recv(self) -> object: ...

    def close(self) -> None: ...


class EnvWorkerError(RuntimeError):
    pass


def _call(env: Env, op: str, arg: object) -> object:
    if op == "reset":
        return env.reset(arg)
    if op == "step":
        return env.step(arg)
    raise ValueError(f"unknown env op {op!r}")


class LocalEnv:
    """The environment in this process: `send` runs the call at once."""

    def __init__(self, make_env: Callable[[], Env]):
        self.env = make_env()
        self._answer: object = None
        self._has = False

    def send(self, op: str, arg: object) -> None:
        self._answer, self._has = _call(self.env, op, arg), True

    def ready(self) -> bool:
        return self._has

    def recv(self) -> object:
        if not self._has:
            raise RuntimeError("recv without a pending call")
        self._has = False
        return self._answer

    def close(self) -> None:
        self.env.close()


def _serve(conn: Connection, make_env: Callable[[], Env]) -> None:
    """Worker loop: one env, calls answered in order, errors sent back as text."""
    env = None
    try:
        env = make_env()
        conn.send(("ok", None))
        while True:
            op, arg = conn.recv()
            if op == "close":
                break
            try:
                conn.send(("ok", _call(env, op, arg)))
            except Exception:  # noqa: BLE001 - reported to the parent, which raises
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception:  # noqa: BLE001 - a failed factory is reported too
        conn.send(("error", traceback.format_exc()))
    finally:
        if env is not None:
            env.close()
        conn.close()


class RemoteEnv:
    """The environment in a worker process; `send` returns at once."""

    def __init__(self, make_env: Callable[[], Env]):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, make_env), daemon=True,
                                name="jerp-env")
        self.proc.start()
        child.close()
        self._started = False
        self._pending = 0

    def send(self, op: str, arg: object) -> None:
        self.conn.send((op, arg))
        self._pending += 1

    def ready(self) -> bool:
        if not self._started and self.conn.poll():
            self._get()  # the worker's first message: its env was built
            self._started = True
        return self._pending > 0 and self.conn.poll()

    def _get(self) -> object:
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            raise EnvWorkerError(f"env worker {self.proc.pid} died "
                                 f"(exit code {self.proc.exitcode})") from None
        if status == "error":
            raise EnvWorkerError(f"env worker {self.proc.pid} failed:\n{value}")
        return value

    def recv(self) -> object:
        if not self._started:  # the worker first reports that its env was built
            self._get()
            self._started = True
        self._pending -= 1
        return self._get()

    def close(self) -> None:
        try:
            self.conn.send(("close", None))
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        self.conn.close()


def wait_any(handles: Sequence[EnvHandle]) -> None:
    """Block until one of the handles has an answer (local ones always do)."""
    if any(h.ready() for h in handles):
        return
    conns = [h.conn for h in handles if isinstance(h, RemoteEnv)]
    if conns:
        wait(conns)
