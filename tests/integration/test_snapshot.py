"""`reconciler snapshot` from real clusters; render/diff read it back exactly like live state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubeharness import Clusters
from typer.testing import CliRunner

from reconciler.commands.app import app
from tests.integration.conftest import EXAMPLE

pytestmark = pytest.mark.integration


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout


def test_snapshot_round_trip(fresh: Clusters, kubeconfig: Path, tmp_path: Path) -> None:
    out = tmp_path / "state"
    code, text = cli("snapshot", "-o", str(out), "--path", str(EXAMPLE), "--kubeconfig", str(kubeconfig))
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == ["mgmt-cluster.yaml", "remote-cluster.yaml"]
    doc = yaml.safe_load((out / "mgmt-cluster.yaml").read_text())
    assert doc["kind"] == "List"
    kinds = {item["kind"] for item in doc["items"]}
    assert {"Node", "Service", "EndpointSlice", "Deployment"} <= kinds

    live_code, live = cli("render", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "-o", "json")
    snap_code, snap = cli("render", str(EXAMPLE), "--state", str(out), "-o", "json")
    assert live_code == snap_code == 0
    assert json.loads(live) == json.loads(snap)

    code, text = cli(
        "explain", "bookinfo-global", str(EXAMPLE), "--from", "us-east-1/us-east-1a", "--state", str(out)
    )
    assert code == 0
    assert "priority 0  100% of requests" in text
    assert (
        text.index("mgmt-cluster", text.index("priority 0"))
        < text.index("priority 1")
        < text.index("remote-cluster")
    )
