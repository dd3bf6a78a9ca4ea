"""One precedence: flag > RECONCILER_* environment > reconciler.yaml > default (reconciler config)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from reconciler.commands.app import app


def effective(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, repo_yaml: str | None = None
) -> dict[str, object]:
    cmd = ["config", "-o", "yaml", *args]
    if repo_yaml is not None:
        (tmp_path / "reconciler.yaml").write_text(repo_yaml)
        cmd += ["--repo-config", str(tmp_path / "reconciler.yaml")]
    result = CliRunner().invoke(app, cmd, env=env or {})
    assert result.exit_code == 0, result.output
    data: dict[str, object] = yaml.safe_load(result.stdout)
    return data


REPO_YAML = "prune: {enabled: false, maxPruneRatio: 0.2}\nstatus: {path: reports}\nmanagementCluster: hub\n"


def test_defaults(tmp_path: Path) -> None:
    data = effective(tmp_path)
    assert (data["prune"], data["max_prune_ratio"], data["status_path"], data["lease_cluster"]) == (
        True,
        0.5,
        "status",
        None,
    )


def test_repository_file_beats_defaults(tmp_path: Path) -> None:
    data = effective(tmp_path, repo_yaml=REPO_YAML)
    assert (data["prune"], data["max_prune_ratio"], data["status_path"], data["lease_cluster"]) == (
        False,
        0.2,
        "reports",
        "hub",
    )


def test_environment_beats_repository_file(tmp_path: Path) -> None:
    env = {
        "RECONCILER_PRUNE": "true",
        "RECONCILER_MAX_PRUNE_RATIO": "0.9",
        "RECONCILER_LEASE_CLUSTER": "mgmt",
    }
    data = effective(tmp_path, env=env, repo_yaml=REPO_YAML)
    assert (data["prune"], data["max_prune_ratio"], data["lease_cluster"]) == (True, 0.9, "mgmt")


def test_flag_beats_environment(tmp_path: Path) -> None:
    env = {"RECONCILER_PRUNE": "true", "RECONCILER_MAX_PRUNE_RATIO": "0.9"}
    data = effective(tmp_path, "--prune=false", "--max-prune-ratio", "0.3", env=env, repo_yaml=REPO_YAML)
    assert (data["prune"], data["max_prune_ratio"]) == (False, 0.3)


def test_kubeconfig_list_from_environment(tmp_path: Path) -> None:
    data = effective(tmp_path, env={"RECONCILER_KUBECONFIG": "/a/one:/b/two"})
    assert data["kubeconfig"] == ["/a/one", "/b/two"]


def test_secrets_are_redacted(tmp_path: Path) -> None:
    env = {
        "RECONCILER_GIT_TOKEN": "s3cr3t-token",
        "RECONCILER_REPO": "https://bot:s3cr3t-token@git.example.com/p.git",
    }
    result = CliRunner().invoke(app, ["config", "-o", "json"], env=env)
    assert result.exit_code == 0
    assert "s3cr3t-token" not in result.stdout
    assert "(set, redacted)" in result.stdout


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_bad_boolean_is_rejected(tmp_path: Path, value: str) -> None:
    result = CliRunner().invoke(app, ["config", f"--prune={value}"])
    assert result.exit_code == 2
    assert f"--prune takes true or false, not '{value}'" in result.stderr  # not any other usage error
