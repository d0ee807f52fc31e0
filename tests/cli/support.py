"""`engage` as a person runs it: a process of its own, in a directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def clean_env(**env: str) -> dict[str, str]:
    """The environment without the run's ENGAGE_* settings, plus `env`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGE_")}
    return {**kept, **env}


def engage(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else clean_env(),
    )
