"""The local defaults: links follow the port the server listens on."""

from __future__ import annotations

from server.config import Settings
from tests.cli.support import clean_env, engage
from tests.support import ROOT


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
    assert "Alice's referral link: http://127.0.0.1:9124/r/" in result.stdout
