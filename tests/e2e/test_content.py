"""A server refuses to start on invalid content, and says where the problem is."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from server.config import Settings
from tests.conftest import server_env
from tests.support import ROOT, ServerProcess

pytestmark = pytest.mark.e2e

BROKEN = """\
# Earning rules, broken on purpose: a negative rate.
purchase:
  growth_per_unit: 1
  points_per_unit: -1
"""


def test_server_refuses_to_start_on_invalid_content(settings: Settings) -> None:
    content = Path(tempfile.mkdtemp(prefix="engage-content-"))
    try:
        (content / "earning.yaml").write_text(BROKEN)
        proc = ServerProcess(server_env(settings, ENGAGE_CONTENT_DIR=str(content)))
        try:
            with pytest.raises(RuntimeError, match="server exited"):
                proc.start(timeout=60)
            assert proc.proc is not None
            code = proc.proc.wait(30)
            output = proc.log()
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()
            proc.log_path.unlink(missing_ok=True)
        assert code != 0, output
        assert "refusing to start" in output, output
        # File, line and field of the problem.
        assert f"{content / 'earning.yaml'}:4: purchase.points_per_unit:" in output, output
        assert "greater than or equal to 0" in output, output
        # It never got as far as serving.
        assert "Uvicorn running" not in output and '"server_started"' not in output, output
    finally:
        shutil.rmtree(content, ignore_errors=True)


def test_content_validate_names_the_same_problem(settings: Settings) -> None:
    """`engage content validate` (the check an operator runs before deploying) agrees."""
    content = Path(tempfile.mkdtemp(prefix="engage-content-"))
    try:
        (content / "earning.yaml").write_text(BROKEN)
        env = {**os.environ, **server_env(settings, ENGAGE_CONTENT_DIR=str(content))}
        out = subprocess.run(
            [sys.executable, "-m", "server.cli", "content", "validate"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 1, out
        assert f"{content / 'earning.yaml'}:4: purchase.points_per_unit:" in out.stdout, out
    finally:
        shutil.rmtree(content, ignore_errors=True)
