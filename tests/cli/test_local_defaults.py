"""The local defaults: links follow the port the server listens on, and `engage serve` tells a new
user what to do first."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from server.config import Settings
from tests.cli.support import clean_env, engage
from tests.support import ROOT, free_port


def test_the_public_base_url_follows_host_and_port(monkeypatch):
    for name in ("ENGAGE_HOST", "ENGAGE_PORT", "ENGAGE_PUBLIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().public_base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("ENGAGE_PORT", "9123")
    assert Settings().public_base_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("ENGAGE_HOST", "0.0.0.0")  # listening everywhere: reached on the loopback
    assert Settings().public_base_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("ENGAGE_HOST", "engage.local")
    assert Settings().public_base_url == "http://engage.local:9123"
    monkeypatch.setenv("ENGAGE_PUBLIC_BASE_URL", "https://play.example.com")
    assert Settings().public_base_url == "https://play.example.com"


def test_demo_links_follow_the_port(tmp_path):
    env = clean_env(ENGAGE_CONTENT_DIR=str(ROOT / "content"), ENGAGE_PORT="9124")
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    result = engage(tmp_path, "demo", env=env)
    assert result.returncode == 0, result.stderr
    assert "http://127.0.0.1:9124/v1/me" in result.stdout
    # The token once, as a shell variable the commands after it use.
    [token_line] = [line for line in result.stdout.splitlines() if line.strip().startswith("TOKEN=")]
    assert token_line.strip().count(".") == 2 and result.stdout.count("Bearer $TOKEN") == 3
    assert "Alice's referral link: http://127.0.0.1:9124/r/" in result.stdout


def test_serve_prints_the_first_steps_on_the_local_defaults(tmp_path):
    port = free_port()
    env = clean_env(
        ENGAGE_CONTENT_DIR=str(ROOT / "content"), ENGAGE_PORT=str(port), ENGAGE_LOG_LEVEL="WARNING"
    )
    assert engage(tmp_path, "migrate", env=env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        # The block comes before serving: once the server answers, it has been printed.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        docs = httpx.get(f"http://127.0.0.1:{port}/schema/swagger", timeout=10)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=5)
    block = out.splitlines()[:5]
    text = "\n".join(block)
    assert f"serving on http://127.0.0.1:{port}" in block[0]
    assert f"http://127.0.0.1:{port}/schema/swagger" in text and docs.status_code == 200
    assert "token demo-alice" in text
    assert "apikey create --name" in text
    assert "manager create" in text and "--role owner" in text
