"""The live-state snapshot written beside the status reports (opt-in): no Secrets, stable bytes,
bounded size, readable by ``--state``, and switched on by flag, environment or reconciler.yaml."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from reconciler.clusters.discover import Discovery
from reconciler.clusters.inventory import Inventory
from reconciler.clusters.snapshot import export_snapshot, read_snapshot
from reconciler.plan import ClusterSource, build_plan
from reconciler.reconcile import with_status_snapshot
from reconciler.repo_config import RepoConfig, StatusSettings
from reconciler.settings import Settings

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "tests" / "golden" / "state" / "three-regions"


def raw_state() -> dict[str, list[dict[str, Any]]]:
    """The golden three-region state as discovery returns it, plus what a real server adds."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(STATE.glob("*.yaml")):
        items = yaml.safe_load(path.read_text())["items"]
        for i, item in enumerate(items):
            meta = item.setdefault("metadata", {})
            meta.update(
                resourceVersion=str(1000 + i), uid=f"uid-{i}", creationTimestamp="2026-01-01T00:00:00Z"
            )
            meta["managedFields"] = [
                {"manager": "kubectl", "operation": "Apply", "time": "2026-01-01T00:00:00Z"}
            ]
            if item["kind"] == "Node":
                item["status"] = {
                    "conditions": [{"type": "Ready", "lastHeartbeatTime": "2026-01-01T00:00:01Z"}]
                }
        items.append(  # one of ours: what the policies render, not topology
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {
                    "name": "vd-bookinfo-global-gloo-mesh",
                    "namespace": "istio-system",
                    "labels": {"app.kubernetes.io/managed-by": "mesh-reconciler"},
                },
                "spec": {"host": "reviews.global"},
            }
        )
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "reviews-db", "namespace": "bookinfo"},
                "data": {"password": "czNjcjN0"},
            }
        )
        out[path.stem] = items
    return out


def churn(raw: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The same fleet read again a minute later: new resourceVersions, heartbeats, write times."""
    again = copy.deepcopy(raw)
    for items in again.values():
        for item in items:
            meta = item["metadata"]
            if "resourceVersion" in meta:
                meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 7)
            for entry in meta.get("managedFields", []):
                entry["time"] = "2026-01-01T00:01:00Z"
            if item["kind"] == "Node":
                item["status"]["conditions"][0]["lastHeartbeatTime"] = "2026-01-01T00:01:01Z"
    return again


def localities(inventory: Inventory) -> dict[str, list[str]]:
    return {n: sorted(str(loc) for loc in st.localities()) for n, st in inventory.clusters.items()}


def test_export_has_no_secret_and_reads_back_as_the_same_fleet(tmp_path: Path) -> None:
    out = tmp_path / "status" / "snapshot"
    changed, warning = export_snapshot(out, raw_state())
    assert changed and warning == ""
    assert sorted(p.name for p in out.iterdir()) == [
        "cluster-3.yaml",
        "mgmt-cluster.yaml",
        "remote-cluster.yaml",
    ]
    for path in out.iterdir():
        text = path.read_text()
        assert "Secret" not in text and "czNjcjN0" not in text and "reviews-db" not in text
        assert "DestinationRule" not in text  # our own objects: impact renders them itself
        for item in yaml.safe_load(text)["items"]:
            assert not {"resourceVersion", "uid", "creationTimestamp"} & set(item["metadata"])
            assert item["kind"] != "Node" or "status" not in item
    exported, golden = read_snapshot(out), read_snapshot(STATE)
    assert localities(exported) == localities(golden)
    # what impact and render compute from it is what they compute from the golden state
    policies = REPO / "policies"
    with (
        build_plan(policies, ClusterSource(state=out)) as a,
        build_plan(policies, ClusterSource(state=STATE)) as b,
    ):
        assert [o.body for o in a.translation.all_objects()] == [o.body for o in b.translation.all_objects()]


def test_an_unchanged_fleet_exports_identical_bytes(tmp_path: Path) -> None:
    out = tmp_path / "snapshot"
    raw = raw_state()
    export_snapshot(out, raw)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert export_snapshot(out, churn(raw)) == (False, "")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_clusters_gone_are_removed_and_unreachable_ones_kept(tmp_path: Path) -> None:
    out = tmp_path / "snapshot"
    raw = raw_state()
    export_snapshot(out, raw)
    (out / "notes.txt").write_text("not ours")
    del raw["cluster-3"]
    unreachable = raw.pop("remote-cluster")
    assert unreachable
    changed, _ = export_snapshot(out, raw, keep=frozenset({"remote-cluster"}))
    assert changed
    assert sorted(p.name for p in out.iterdir()) == ["mgmt-cluster.yaml", "notes.txt", "remote-cluster.yaml"]


def test_a_snapshot_over_the_limit_is_not_written_and_the_stale_one_removed(tmp_path: Path) -> None:
    out = tmp_path / "snapshot"
    export_snapshot(out, raw_state())
    changed, warning = export_snapshot(out, raw_state(), max_bytes=1000)
    assert changed
    assert "live-state snapshot not written" in warning and "over the 1,000-byte limit" in warning
    assert list(out.glob("*.yaml")) == []


def test_the_setting_is_off_by_default_and_follows_the_precedence() -> None:
    assert Settings().resolved(RepoConfig()).status_snapshot is False
    on = RepoConfig(status=StatusSettings(snapshot=True))
    assert Settings().resolved(on).status_snapshot is True
    assert Settings(status_snapshot=False).resolved(on).status_snapshot is False  # flag/env beat the file
    assert RepoConfig.model_validate({"status": {"snapshot": True}}).status.snapshot is True


def test_reconcile_writes_it_only_when_asked_and_only_from_clusters(tmp_path: Path) -> None:
    calls: list[Path] = []

    def regenerate(worktree: Path) -> bool:
        calls.append(worktree)
        return False

    with build_plan(REPO / "policies", ClusterSource(state=STATE)) as plan:
        on = dataclasses.replace(Settings(), status_snapshot=True, status_path="status")
        # from a snapshot directory there is no discovery: nothing new to export
        assert with_status_snapshot(regenerate, on, plan, ".") is regenerate
        off = dataclasses.replace(on, status_snapshot=False)
        assert with_status_snapshot(regenerate, off, plan, ".") is regenerate
        # live state that discovery listed: written beside the reports of the worktree, once
        plan.discovery = Discovery(plan.inventory, raw=raw_state())
        write = with_status_snapshot(regenerate, on, plan, "sub")
        worktree = tmp_path / "worktree"
        assert write(worktree) is True
        assert calls == [worktree]
        assert sorted(p.name for p in (worktree / "sub" / "status" / "snapshot").iterdir()) == [
            "cluster-3.yaml",
            "mgmt-cluster.yaml",
            "remote-cluster.yaml",
        ]
        assert write(worktree) is False  # nothing new: no status commit
        plan.discovery = None
