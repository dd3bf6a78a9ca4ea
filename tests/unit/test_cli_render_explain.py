"""render / explain / diff against a snapshot directory (no clusters needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.helpers import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "bookinfo"


def test_render_yaml_grouped_by_cluster() -> None:
    code, out, _ = cli("render", str(EXAMPLE), "--state", str(STATE))
    assert code == 0
    assert out.startswith("# ---- cluster: mgmt-cluster (3 objects)\n---\n")
    assert "# ---- cluster: remote-cluster (2 objects)" in out


def test_render_single_cluster_json() -> None:
    code, out, _ = cli(
        "render", str(EXAMPLE), "--state", str(STATE), "--cluster", "remote-cluster", "-o", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert list(data["clusters"]) == ["remote-cluster"]
    assert [o["kind"] for o in data["clusters"]["remote-cluster"]] == ["ServiceEntry", "DestinationRule"]


def test_explain_text_and_failed() -> None:
    code, out, _ = cli(
        "explain",
        "gloo-mesh/bookinfo-global",
        str(EXAMPLE),
        "--from",
        "us-east-1/us-east-1a",
        "--state",
        str(STATE),
        "--failed",
        "mgmt-cluster",
    )
    assert code == 0
    assert "ejected: endpoints in mgmt-cluster" in out
    assert "priority 0  0% of requests" in out
    assert "priority 1  100% of requests" in out


def test_explain_json_from_remote() -> None:
    code, out, _ = cli(
        "explain", "bookinfo-global", str(EXAMPLE), "--from", "us-east-2", "--state", str(STATE), "-o", "json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["client"] == {"locality": "us-east-2", "cluster": "remote-cluster"}
    assert [lvl["endpoints"][0]["cluster"] for lvl in data["priorities"]] == [
        "remote-cluster",
        "mgmt-cluster",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nope", "--from", "us-east-1"), "error: VirtualDestination nope not found"),
        (("bookinfo-global", "--from", "mars-1"), "error: no cluster has nodes in mars-1"),
        (("bookinfo-global",), "error: --from REGION[/ZONE[/SUBZONE]] is required"),
    ],
)
def test_explain_errors_exit_2(args: tuple[str, ...], message: str) -> None:
    # Exit 2 is also what click returns for any usage error: the message proves the reason.
    code, out, err = cli("explain", args[0], str(EXAMPLE), *args[1:], "--state", str(STATE))
    assert code == 2 and out == ""
    assert err.startswith(message), err


def test_diff_against_snapshot_exit_1_with_json_schema() -> None:
    code, out, _ = cli("diff", str(EXAMPLE), "--state", str(STATE), "-o", "json")
    assert code == 1
    data = json.loads(out)
    assert data["summary"] == {"created": 5}
    first = data["clusters"][0]["objects"][0]
    assert set(first) >= {"cluster", "kind", "namespace", "name", "action", "changedPaths"}


def test_missing_snapshot_dir_exit_2(tmp_path: Path) -> None:
    code, _, err = cli("render", str(EXAMPLE), "--state", str(tmp_path / "nope"))
    assert code == 2
    assert "snapshot directory not found" in err
