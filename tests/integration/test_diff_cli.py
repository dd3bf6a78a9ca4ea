"""`reconciler diff` against real API servers reports what `reconcile` would do with the same options.

Before, diff built its engine options itself: it did not take --adopt (nor --prune, --force, ...), so
it reported a conflict for an object that `reconcile --adopt` takes over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient
from typer.testing import CliRunner

from reconciler.commands.app import app
from reconciler.engine.changeset import Action
from reconciler.reconcile import PassResult, cluster_source, lease_settings, run_pass, sync_options
from reconciler.repo_config import load_repo_config
from reconciler.settings import Settings

pytestmark = pytest.mark.integration

NETWORKING = "networking.istio.io/v1"


def diff(repo: Path, kubeconfig: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["diff", str(repo), "--kubeconfig", str(kubeconfig), "-o", "json", *args], env={"COLUMNS": "200"}
    )
    assert result.stdout.startswith("{"), result.output  # not a usage error
    return result.exit_code, json.loads(result.stdout)


def reconcile(repo: Path, kubeconfig: Path, **settings: Any) -> PassResult:
    """What `reconcile` does with the policy directory once fetched: the same settings -> options path."""
    effective = Settings(kubeconfig=[str(kubeconfig)], lease_cluster="mgmt-cluster", **settings).resolved(
        load_repo_config(repo)[0]
    )
    return run_pass(
        repo, cluster_source(effective), sync_options(effective, apply=True), lease_settings(effective)
    )


def reviews(payload: dict[str, Any]) -> dict[str, Any]:
    [obj] = [
        o
        for c in payload["clusters"]
        for o in c["objects"]
        if (o["cluster"], o["kind"], o["name"]) == ("mgmt-cluster", "VirtualService", "reviews")
    ]
    return obj


def test_diff_with_adopt_reports_the_adoption_reconcile_makes(
    fresh: Clusters, repo: Path, kubeconfig: Path, api_clients: dict[str, ApiClient]
) -> None:
    mgmt = api_clients["mgmt-cluster"]
    # Someone copied our label onto their own VirtualService at the name the policy renders.
    made = kube.apply(
        mgmt,
        {
            "apiVersion": NETWORKING,
            "kind": "VirtualService",
            "metadata": {
                "name": "reviews",
                "namespace": "bookinfo",
                "labels": {"app.kubernetes.io/managed-by": "mesh-reconciler"},
            },
            "spec": {
                "hosts": ["reviews.bookinfo.svc.cluster.local"],
                "http": [{"route": [{"destination": {"host": "reviews-canary"}}]}],
            },
        },
        field_manager="kubectl",
    )

    code, payload = diff(repo, kubeconfig)
    assert reviews(payload)["action"] == "conflict" and "--adopt" in reviews(payload)["message"]
    assert code == 2

    code, payload = diff(repo, kubeconfig, "--adopt")
    assert reviews(payload)["action"] == "configured"
    assert reviews(payload)["message"] == "adopted (was not managed by mesh-reconciler)"
    assert reviews(payload)["previousManagers"] == ["kubectl"] and reviews(payload)["changedPaths"]
    assert code == 1
    live = kube.get(mgmt, NETWORKING, "VirtualService", "reviews", namespace="bookinfo")
    assert live["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]  # diff wrote nothing

    # reconcile with the same option does what diff said.
    result = reconcile(repo, kubeconfig, adopt=True)
    [vs] = [c for c in result.changes.all() if c.cluster == "mgmt-cluster" and c.kind == "VirtualService"]
    assert vs.action is Action.CONFIGURE and vs.message == reviews(payload)["message"]
    code, payload = diff(repo, kubeconfig)
    assert (code, reviews(payload)["action"]) == (0, "unchanged")


def test_diff_follows_reconciler_yaml_prune_settings_and_the_prune_flag(
    fresh: Clusters, repo: Path, kubeconfig: Path
) -> None:
    reconcile(repo, kubeconfig)
    (repo / "reviews-shift-failover.yaml").unlink()  # the VirtualService is no longer desired

    code, payload = diff(repo, kubeconfig)
    assert (code, reviews(payload)["action"]) == (1, "pruned")

    config = repo / "reconciler.yaml"
    data = yaml.safe_load(config.read_text())
    data["prune"]["enabled"] = False
    config.write_text(yaml.safe_dump(data))
    code, payload = diff(repo, kubeconfig)
    assert reviews(payload)["action"] == "held"
    assert reviews(payload)["message"] == "no longer desired; not pruned (pruning disabled)"
    assert code == 0

    code, payload = diff(repo, kubeconfig, "--prune=true")  # the flag beats reconciler.yaml
    assert (code, reviews(payload)["action"]) == (1, "pruned")
