"""`python -m jerp.prefect_server -- CMD`: one real Prefect server for the command, gone after."""

from __future__ import annotations

import subprocess
import sys

import psutil
import pytest

from jerp.crashes import free_port
from jerp.prefect_server import healthy


@pytest.mark.slow
def test_command_sees_the_server_and_the_server_stops_after(tmp_path, root):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    probe = ("import os, urllib.request; u = os.environ['PREFECT_API_URL']; "
             "print(u, urllib.request.urlopen(u + '/health').status)")
    res = subprocess.run([sys.executable, "-m", "jerp.prefect_server", "--port", str(port), "--",
                          sys.executable, "-c", probe],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == [api, "200"]
    assert not healthy(api)  # stopped with the command
    left = [p for p in psutil.process_iter(["cmdline"])
            if str(port) in " ".join(p.info["cmdline"] or [])]
    assert not left


def test_exit_status_of_the_command_is_kept(root):
    # a server already "answering" is not needed for the exit status to pass through
    res = subprocess.run([sys.executable, "-m", "jerp.prefect_server", "--port", str(free_port()),
                          "--wait", "0", "--", sys.executable, "-c", "raise SystemExit(3)"],
                         cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == 3
