"""Process set-up at the edge: environment defaults for Prefect, MLflow, DVC and HF.

Called first thing by every flow and the CLI, before prefect or mlflow are
imported, so their settings take effect. Explicit user settings always win.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: Path | None = None) -> Path:
    """The folder holding params.yaml (the cwd under `dvc repro`)."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "params.yaml").exists() and (p / "dvc.yaml").exists():
            return p
    return here


def origin(root: Path) -> Path:
    """The user's project for a DVC experiment workspace: `dvc exp run --queue` (and
    --temp) run the pipeline in a copy under <project>/.dvc/tmp/exps/. Run state (the
    Prefect and MLflow stores, converted weights) and the data beside the project
    resolve to <project>, so queued runs show up where the user looks."""
    parts = root.resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def configure(root: Path) -> None:
    root = origin(root)
    defaults = {
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GIT_PYTHON_REFRESH": "quiet",
    }
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
