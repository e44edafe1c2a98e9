"""Run a command (`dvc repro`) with one Prefect server for the whole of it.

    python -m jerp.prefect_server [--port 4200] -- dvc repro

Without it every stage starts Prefect's temporary server for itself (about 5 s
each, 18 stages in the default DAG) and nobody can watch a run while it goes.
With it the stages report to one server on 127.0.0.1 (the project's
`.prefect` store), so the UI at http://127.0.0.1:PORT shows each stage, its
chunk tasks and their progress live. A server already answering on the port
(`make prefect-ui`) is used as it is; one started here is stopped at the end,
and dies with this process (jerp.crashes). If none can be started, the command
runs as it would without this wrapper.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from jerp.crashes import dies_with_parent, healthy, stop, wait_healthy
from jerp.runtime import configure, origin, project_root


def start_server(port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`prefect server start` on 127.0.0.1:port, dying with this process; `env`: its
    environment (default: this process's, so its PREFECT_HOME)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
           "--port", str(port)]
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=dies_with_parent(), start_new_session=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jerp.prefect_server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=4200)
    ap.add_argument("--wait", type=float, default=120, help="seconds to wait for the server")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to run after --, e.g. -- dvc repro")
    root = project_root()
    configure(root)  # PREFECT_HOME = the project's .prefect, as the stages use
    api = f"http://127.0.0.1:{args.port}/api"
    server = None
    if not healthy(api):
        log = origin(root) / ".prefect" / "server.log"
        server = start_server(args.port, log)
        if not wait_healthy(api, server, args.wait):
            print(f"jerp.prefect_server: no Prefect server on port {args.port} (see {log}); each "
                  "stage starts its own temporary one", file=sys.stderr)
            stop(server)
            server = None
    env = dict(os.environ)
    if server is not None or healthy(api):
        env["PREFECT_API_URL"] = api
        print(f"Prefect UI: http://127.0.0.1:{args.port} (this run's flows, live)",
              file=sys.stderr)
    try:
        return subprocess.call(command, env=env)
    finally:
        if server is not None:
            stop(server)


if __name__ == "__main__":
    raise SystemExit(main())
