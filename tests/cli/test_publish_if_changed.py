"""`engage content publish --if-changed` (what `make run` does): publishes files that changed since
they were last published from their directory, and never undoes a rollback or a publish made
from elsewhere meanwhile."""

from __future__ import annotations

from pathlib import Path

from server.app import install
from server.content.loader import read_files
from tests.cli.support import clean_env, engage
from tests.conftest import server_env
from tests.support import ROOT

install()

QUEST = "quests:\n  - id: {id}\n    title: {id}\n    goal: {{event: share, count: 1}}\n"


def write_content(root: Path, quest_id: str) -> Path:
    files = read_files(ROOT / "content")
    files["quests/extra.yaml"] = QUEST.format(id=quest_id)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def live_version(cwd: Path, env: dict[str, str]) -> int:
    listed = engage(cwd, "content", "versions", env=env)
    assert listed.returncode == 0, listed.stderr
    return int(listed.stdout.splitlines()[0].split("\t")[0])


def test_publish_if_changed_publishes_once_and_keeps_a_rollback(own_settings, tmp_path):
    env = clean_env(**server_env(own_settings))
    content = write_content(tmp_path / "content", "first")

    def publish_if_changed(root: Path = content) -> str:
        result = engage(
            tmp_path, "content", "publish", str(root), "--if-changed", "--note", "make run", env=env
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout.strip()

    assert publish_if_changed() == "published version 1"
    assert publish_if_changed() == "content unchanged since version 1: not published"

    write_content(content, "second")
    assert publish_if_changed() == "published version 2"

    # A manager rolls back: starting again with the same files must not publish them over it.
    assert engage(tmp_path, "content", "rollback", "1", env=env).returncode == 0
    assert publish_if_changed() == "content unchanged since version 2: not published (version 3 is live)"
    assert live_version(tmp_path, env) == 3

    # A publish from another directory stands too.
    other = write_content(tmp_path / "other", "other")
    assert engage(tmp_path, "content", "publish", str(other), env=env).stdout.strip() == "published version 4"
    assert publish_if_changed() == "content unchanged since version 2: not published (version 4 is live)"

    # Files edited again are published, even back to what an older version held.
    write_content(content, "first")
    assert publish_if_changed() == "published version 5"
    assert live_version(tmp_path, env) == 5
    assert publish_if_changed() == "content unchanged since version 5: not published"


def test_publish_if_changed_is_in_the_help(tmp_path):
    result = engage(tmp_path, "content", "publish", "--help", env=clean_env(COLUMNS="200"))
    assert "--if-changed" in result.stdout
    assert "never undoes a" in " ".join(result.stdout.split())
