"""Sharing a run through a DVC remote: push from one repository, then a fresh `git clone`
pulls the rule snapshots, the adapter and the metrics, and `dvc metrics show` and
`jerp rules diff` work there. Two remotes: the project's default (.dvc/config: a
folder beside the project) and an S3-compatible bucket (dvc-s3 against moto's S3
server, started here on 127.0.0.1). The pipeline itself is stood in for by a
one-stage dvc.yaml that writes outputs of the same kinds, with jerp's own writers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jerp.crashes import free_port

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

MAKE_OUTPUTS = '''\
from jerp import paths
from jerp.memory.pool import empty_pool
from jerp.records import Rule, write_json, write_snapshot

write_snapshot(paths.rules_file(0), empty_pool(10))
rule = Rule(id="R1", text="Heat the mug before placing it.", score=2,
            scope="pick_heat_then_place_in_recep", created=1, updated=1)
write_snapshot(paths.rules_file(1), empty_pool(10).model_copy(
    update={"iteration": 1, "rules": [rule], "next_id": 2}))
adapter = paths.adapter_dir(1)
adapter.mkdir(parents=True, exist_ok=True)
(adapter / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
write_json(adapter / "adapter.json", {"kind": "lora", "base": "smollm2", "iteration": 1})
write_json(paths.metrics_file(1), {"success": 0.25, "expert_top1": 0.4})
'''

DVC_YAML = f'''\
stages:
  make:
    cmd: {sys.executable} make_outputs.py
    deps: [make_outputs.py]
    outs: [data/iter_0/rules.json, data/iter_1/rules.json, data/iter_1/adapter]
    metrics:
      - metrics/iter_1.json:
          cache: false
'''


def sh(cmd: list[str], cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(extra_env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT / "src"), "GIT_AUTHOR_NAME": "t", "GIT_COMMITTER_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_EMAIL": "t@example.org"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"{' '.join(cmd)}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def _files(folder: Path, rels: list[str]) -> dict[str, bytes]:
    out = {}
    for rel in rels:
        p = folder / rel
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            out[str(f.relative_to(folder))] = f.read_bytes()
    return out


def _round_trip(tmp_path: Path, add_remote, env: dict[str, str] | None = None) -> None:
    """Repro, commit, push with the remote add_remote(origin) sets; clone, pull, check."""
    origin = tmp_path / "origin"
    origin.mkdir()
    sh(["git", "init", "-q"], origin)
    sh(["dvc", "init", "-q"], origin)
    add_remote(origin)
    (origin / "make_outputs.py").write_text(MAKE_OUTPUTS)
    (origin / "dvc.yaml").write_text(DVC_YAML)
    sh(["dvc", "repro", "-q"], origin)
    sh(["git", "add", "-A"], origin)
    sh(["git", "commit", "-qm", "a run"], origin)
    sh(["dvc", "push"], origin, env)

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    outs = ["data/iter_0/rules.json", "data/iter_1/rules.json", "data/iter_1/adapter"]
    assert not any((clone / o).exists() for o in outs)  # git carries only DVC's pointers
    shutil.rmtree(origin / ".dvc" / "cache")  # nothing may come from the origin's cache
    sh(["dvc", "pull"], clone, env)
    assert _files(clone, outs) == _files(origin, outs)

    metrics = sh(["dvc", "metrics", "show", "--json"], clone)
    assert json.loads(metrics)[""]["data"]["metrics/iter_1.json"]["data"] == {
        "success": 0.25, "expert_top1": 0.4}
    diff = json.loads(sh([sys.executable, "-m", "jerp.cli", "rules", "diff", "0", "1",
                          "--json"], clone))
    assert [r["id"] for r in diff["added"]] == ["R1"]


def test_local_remote_round_trip(tmp_path):
    def project_default(origin: Path) -> None:
        shutil.copy(ROOT / ".dvc" / "config", origin / ".dvc" / "config")

    _round_trip(tmp_path, project_default)
    remote = tmp_path / "jerp-remote"  # ../jerp-remote: beside the project, never inside
    assert remote.is_dir() and sum(1 for p in remote.rglob("*") if p.is_file()) >= 4


@pytest.fixture
def s3_server():
    """moto's S3-compatible server on 127.0.0.1, stopped after the test."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_s3_remote_round_trip(tmp_path, s3_server):
    import boto3

    creds = {"AWS_ACCESS_KEY_ID": "jerp-test", "AWS_SECRET_ACCESS_KEY": "jerp-test",
             "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="jerp-test",
                      aws_secret_access_key="jerp-test", region_name="us-east-1")
    s3.create_bucket(Bucket="jerp-team")

    def team_bucket(origin: Path) -> None:
        sh(["dvc", "remote", "add", "-d", "team", "s3://jerp-team/runs"], origin)
        sh(["dvc", "remote", "modify", "team", "endpointurl", s3_server], origin)

    _round_trip(tmp_path, team_bucket, creds)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="jerp-team")["Contents"]]
    assert len(keys) >= 4 and all(k.startswith("runs/") for k in keys)
    assert "jerp-test" not in (tmp_path / "origin" / ".dvc" / "config").read_text()
