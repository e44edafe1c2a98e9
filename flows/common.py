"""Shared start-up for every stage flow: environment defaults, then validated params.

Params are validated before Prefect starts, so a bad value stops the stage
with one clear message (exit code 2) and nothing is written. Then Prefect's
temporary server starts tied to this process, and runs left Running by killed
stages are marked Crashed (jerp.crashes).
"""

from __future__ import annotations

import argparse
import sys

from jerp.config import Params, ParamsError, load_params
from jerp.crashes import guard_stage
from jerp.runtime import configure, project_root

ROOT = project_root()
configure(ROOT)


def load() -> Params:
    try:
        params = load_params(ROOT / "params.yaml")
    except ParamsError as e:
        print(f"params.yaml: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    guard_stage()
    return params


def iteration_args(with_prev: bool = True) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iteration", type=int, required=True)
    if with_prev:
        ap.add_argument("--prev", type=int, required=True)
    return ap.parse_args()
