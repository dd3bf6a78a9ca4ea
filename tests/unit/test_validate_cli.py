"""`reconciler validate` end to end (in-process CLI), checked against golden output files.

Regenerate the golden files after an intended message change with ``UPDATE_GOLDEN=1 pytest ...``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.commands.app import app

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "validate"
EXAMPLE = Path(__file__).resolve().parents[2] / "policies"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    return result.exit_code, result.stdout


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert actual == path.read_text(encoding="utf-8")


def test_valid_example_exit_0() -> None:
    code, out = _run("validate", str(EXAMPLE))
    assert code == 0
    assert (
        out.strip()
        == "valid: 1 TrafficPolicy, 1 VirtualDestination, 1 VirtualMesh valid; 0 invalid; 0 error(s), 0 warning(s)"
    )


def test_broken_repository_text_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    code, out = _run("validate", "broken-repo")
    assert code == 1
    _golden("broken-repo.txt", out)


def test_broken_repository_json_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    code, out = _run("validate", "broken-repo", "-o", "json")
    assert code == 1
    payload = json.loads(out)
    assert payload["valid"] is False
    assert {f["file"] for f in payload["findings"]} >= {"team-a/vd.yaml", "team-a/tp.yaml", "broken.yaml"}
    assert all("line" in f for f in payload["findings"])
    _golden("broken-repo.json", out)


def test_unreadable_path_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "missing")], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'missing'}: not a readable directory\n"


def test_schema_writes_three_kinds(tmp_path: Path) -> None:
    code, _ = _run("schema", "-d", str(tmp_path))
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["trafficpolicy.schema.json", "virtualdestination.schema.json", "virtualmesh.schema.json"]
    vd = json.loads((tmp_path / "virtualdestination.schema.json").read_text())
    assert "hostname" in json.dumps(vd)
    assert vd["additionalProperties"] is False
