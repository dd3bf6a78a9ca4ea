"""The CI flow of docs/impact.md, all real: the CronJob's `reconcile` exports the live state beside the
status reports (opt-in), and a pull request's CI runs `impact --state` on it without credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

from tests.integration.conftest import git
from tests.unit.helpers import cli

pytestmark = pytest.mark.integration

SECRET_VALUE = "s3cr3t-do-not-commit"
DIRECTIVE = "    failoverDirectives:\n      - from: {region: us-east-1}\n        to: [{region: us-east-2}, {region: eu-west-1}]\n"


def test_cronjob_exports_the_snapshot_and_pr_ci_runs_impact_on_it(
    fresh: Clusters,
    kubeconfig: Path,
    api_clients: dict[str, ApiClient],
    remote: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    bare, work = remote
    # A Secret in a namespace discovery lists: it must never reach the repository.
    kube.apply(
        api_clients["mgmt-cluster"],
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "reviews-db", "namespace": "bookinfo"},
            "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
        },
    )
    # The policy team opts in (reconciler.yaml), with cluster-3 and a two-step failover directive.
    config = yaml.safe_load((work / "reconciler.yaml").read_text())
    config["clusters"]["cluster-3"] = "cluster-3"
    config["status"]["snapshot"] = True
    (work / "reconciler.yaml").write_text(yaml.safe_dump(config))
    vd = work / "bookinfo-global.yaml"
    vd.write_text(vd.read_text().replace("  localized:\n", "  localized:\n" + DIRECTIVE, 1))
    git(work, "commit", "-qam", "fail over to us-east-2, then eu-west-1; export the fleet snapshot")
    git(work, "push", "-q", "origin", "HEAD:main")

    reconcile = (
        "reconcile",
        "--repo",
        f"file://{bare}",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--kubeconfig",
        str(kubeconfig),
        "--lease-cluster",
        "mgmt-cluster",
        "--log-format",
        "json",
        "-o",
        "json",
    )
    code, out, err = cli(*reconcile)
    assert code == 0, (out, err)
    assert json.loads(out)["statusCommit"]
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    snapshot = work / "status" / "snapshot"
    files = sorted(p.name for p in snapshot.iterdir())
    assert files == ["cluster-3.yaml", "mgmt-cluster.yaml", "remote-cluster.yaml"]
    for path in snapshot.iterdir():
        text = path.read_text()
        assert "kind: Secret" not in text and SECRET_VALUE not in text and "reviews-db" not in text
        assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
        items = yaml.safe_load(text)["items"]
        assert items and all("resourceVersion" not in item["metadata"] for item in items)
        # the topology, not our own objects (impact renders those itself)
        assert {i["kind"] for i in items} == {"Node", "Service", "EndpointSlice", "Deployment"}
    assert "status/snapshot/mgmt-cluster.yaml" in git(work, "show", "--name-only", "--format=", "HEAD")

    # An unchanged fleet exports the same bytes: the next run commits nothing.
    code, out, _ = cli(*reconcile)
    assert code == 0 and json.loads(out)["statusCommit"] is None

    # The pull request: reorder the fallbacks. CI has the repository, not the clusters.
    git(work, "checkout", "-q", "-b", "reorder")
    vd.write_text(
        vd.read_text().replace(
            "[{region: us-east-2}, {region: eu-west-1}]", "[{region: eu-west-1}, {region: us-east-2}]"
        )
    )
    git(work, "commit", "-qam", "eu-west-1 before us-east-2")
    code, out, err = cli("impact", str(work), "--base", "origin/main", "--state", str(snapshot), "-o", "json")
    assert code == 1, err
    report = json.loads(out)
    changed = [r for r in report["routes"] if r["changed"]]
    # Only clients in us-east-1 (the directive's `from`) see a new order. Earlier tests of the session
    # may have left more nodes -- more client localities -- in the shared clusters: each of them counts.
    assert changed and all(
        r["client"]["locality"].startswith("us-east-1/") and r["changes"] == ["order"] for r in changed
    ), [r["client"] for r in changed]
    (row,) = [r for r in changed if r["client"]["locality"] == "us-east-1/us-east-1a"]
    order = [[e["cluster"] for e in level] for level in row["after"]["priorities"]]
    assert order == [["mgmt-cluster"], ["cluster-3"], ["remote-cluster"]]
    before = [[e["cluster"] for e in level] for level in row["before"]["priorities"]]
    assert before == [["mgmt-cluster"], ["remote-cluster"], ["cluster-3"]]
    # the same answer as impact against the live clusters themselves
    code, live_out, err = cli(
        "impact", str(work), "--base", "origin/main", "--kubeconfig", str(kubeconfig), "-o", "json"
    )
    assert code == 1, err
    live = json.loads(live_out)
    assert live["routes"] == report["routes"] and live["objects"] == report["objects"]
