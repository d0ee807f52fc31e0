"""Content: YAML with line numbers, every error naming file, line and field; the CLI exits non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.app import install
from server.content.loader import ContentInvalid, load, parse_yaml, validate
from tests.support import ROOT

install()


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "earning.yaml").write_text(text)
    return tmp_path


def test_repository_content_is_valid():
    store = load(ROOT / "content")
    purchase = store.get("earning").purchase
    # What content/earning.yaml says a unit of spend is worth.
    assert (purchase.points_per_unit, purchase.growth_per_unit, purchase.growth_per_order) == (1, 1, 0)


def test_lines_are_kept(tmp_path):
    doc = parse_yaml(
        write(tmp_path, "# c\npurchase:\n  points_per_unit: 2\n  growth_per_unit: 3\n") / "earning.yaml"
    )
    assert doc.lines[("purchase",)] == 2
    assert doc.lines[("purchase", "growth_per_unit")] == 4


def test_errors_name_file_line_and_field(tmp_path):
    root = write(tmp_path, "purchase:\n  points_per_unit: -1\n  growth_per_unit: 1\n  bonus: 5\n")
    _, issues = validate(root)
    found = {(i.line, i.field) for i in issues}
    assert (2, "purchase.points_per_unit") in found
    assert (4, "purchase.bonus") in found
    assert all(i.file.endswith("earning.yaml") for i in issues)
    with pytest.raises(ContentInvalid) as exc:
        load(root)
    assert "earning.yaml:2: purchase.points_per_unit" in str(exc.value)


def test_broken_yaml_names_the_line(tmp_path):
    root = write(tmp_path, "purchase:\n  points_per_unit: [1\n")
    _, issues = validate(root)
    assert len(issues) == 1 and issues[0].line >= 2 and "not valid YAML" in issues[0].message


def test_missing_dir(tmp_path):
    _, issues = validate(tmp_path / "nope")
    assert issues and "not found" in issues[0].message


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENGAGE_DATA_DIR": "/tmp/engage-cli-test"},
    )


def test_cli_validate(tmp_path):
    ok = run_cli("content", "validate", str(ROOT / "content"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = run_cli("content", "validate", str(write(tmp_path, "purchase:\n  growth_per_unit: lots\n")))
    assert bad.returncode == 1
    assert "earning.yaml:2: purchase.growth_per_unit" in bad.stdout


def test_cli_schema(tmp_path):
    out = run_cli("content", "schema", str(tmp_path / "schemas"))
    assert out.returncode == 0
    assert (tmp_path / "schemas" / "earning.schema.json").exists()


def test_committed_schemas_are_current():
    """content/schemas/ is what editors read while managers type: it must match the code."""
    import json

    from server.content.loader import json_schemas

    for filename, schema in json_schemas().items():
        committed = ROOT / "content" / "schemas" / (Path(filename).stem + ".schema.json")
        assert committed.exists(), f"run `engage content schema` ({committed} is missing)"
        assert json.loads(committed.read_text()) == schema, f"run `engage content schema` ({committed})"
