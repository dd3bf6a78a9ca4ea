"""``reconciler.yaml`` never crashes a run: every problem is one finding located in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.repo_config import FILENAME, RepoConfig, load_repo_config


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status: {path: " + "[" * 900 + "]" * 900 + "}\n", "status.path"),  # deep, but one finding
        ("a: &a [*a]\n", ""),  # a recursive alias: any clear message, no crash
        ("status: {path: ../elsewhere}\n", "status.path: must be a subdirectory"),
        ("status: {path: /etc}\n", "must be a subdirectory"),
        ("status: {path: .}\n", "must be a subdirectory"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_broken_config_is_one_finding_and_defaults_apply(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / FILENAME).write_text(text)
    config, findings = load_repo_config(tmp_path)
    [finding] = findings
    assert finding.is_error and finding.location is not None and finding.location.file == FILENAME
    assert expected in finding.message
    assert config.status.path == RepoConfig().status.path


def test_nested_status_path_is_accepted(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_text("status: {path: mesh/status}\n")
    config, findings = load_repo_config(tmp_path)
    assert findings == [] and config.status.path == "mesh/status"
