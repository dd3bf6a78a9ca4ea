"""cronjob.yaml on a real API server: it dry-runs cleanly, and its RBAC is sufficient and minimal."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

from reconciler.engine.lease import LeaseError, LeaseSettings
from reconciler.engine.sync import SyncOptions
from reconciler.plan import ClusterSource
from reconciler.reconcile import LeaseUnavailable, run_pass
from tests.integration.conftest import EXAMPLE, REPO, TWO, wipe

pytestmark = pytest.mark.integration

MANIFEST = [d for d in yaml.safe_load_all((REPO / "cronjob.yaml").read_text()) if d]
SA_USER = "system:serviceaccount:mesh-reconciler:mesh-reconciler"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:mesh-reconciler", "system:authenticated"]


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [d for d in MANIFEST if d["kind"] == kind]
    return copy.deepcopy(doc)


def test_cronjob_manifest_server_side_dry_run(bookinfo: Clusters, api_clients: dict[str, ApiClient]) -> None:
    api = api_clients["mgmt-cluster"]
    for doc in MANIFEST:
        if doc["kind"] == "Namespace":
            kube.apply(api, doc, field_manager="test-deploy")  # namespaced objects need it to exist
            continue
        result = kube.apply(api, doc, field_manager="test-deploy", dry_run=True)
        assert result["kind"] == doc["kind"]
    cron = by_kind("CronJob")["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


INDEXED = [d for d in yaml.safe_load_all((REPO / "deploy" / "cronjob-indexed.yaml").read_text()) if d]


def test_indexed_cronjob_is_cronjob_yaml_as_an_indexed_job() -> None:
    """deploy/cronjob-indexed.yaml never drifts from cronjob.yaml: the same objects, and a CronJob
    that differs only in the Job's indexed completion mode and the shard count variable."""
    assert [(d["kind"], d["metadata"]["name"]) for d in INDEXED] == [
        (d["kind"], d["metadata"]["name"]) for d in MANIFEST
    ]
    for plain, indexed in zip(MANIFEST, INDEXED, strict=True):
        if plain["kind"] != "CronJob":
            assert indexed == plain, plain["kind"]
    [cron] = [copy.deepcopy(d) for d in INDEXED if d["kind"] == "CronJob"]
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job.pop("completionMode") == "Indexed"
    count = job.pop("completions")
    assert job.pop("parallelism") == count >= 2
    env = job["template"]["spec"]["containers"][0]["env"]
    [shards] = [e for e in env if e["name"] == "RECONCILER_SHARD_COUNT"]
    assert shards["value"] == str(count)
    env.remove(shards)
    assert cron == by_kind("CronJob")


def test_indexed_cronjob_server_side_dry_run(bookinfo: Clusters, api_clients: dict[str, ApiClient]) -> None:
    """The API server accepts the indexed variant as it is (an Indexed Job needs completions)."""
    api = api_clients["mgmt-cluster"]
    for doc in INDEXED:
        if doc["kind"] == "Namespace":
            kube.apply(api, doc, field_manager="test-deploy")
            continue
        result = kube.apply(api, doc, field_manager="test-deploy", dry_run=True)
        assert result["kind"] == doc["kind"]
        if doc["kind"] == "CronJob":
            job = result["spec"]["jobTemplate"]["spec"]
            assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 3, 3)


def _install_rbac(
    api_clients: dict[str, ApiClient], cluster_role: dict[str, Any], role: dict[str, Any]
) -> None:
    for name in TWO:
        api = api_clients[name]
        for kind in ("Namespace", "ServiceAccount", "ClusterRoleBinding", "RoleBinding"):
            kube.apply(api, by_kind(kind), field_manager="test-deploy")
        kube.apply(api, cluster_role, field_manager="test-deploy")
        kube.apply(api, role, field_manager="test-deploy")


def _policies_b(repo: Path) -> None:
    """Changes that need every verb: a prune (delete), a configure (patch) and a create."""
    (repo / "reviews-shift-failover.yaml").unlink()
    vd = repo / "bookinfo-global.yaml"
    text = vd.read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 60s")
    second = text.replace("name: bookinfo-global", "name: details-global").replace(
        "reviews.global", "details.global"
    )
    vd.write_text(text)
    (repo / "details-global.yaml").write_text(second)


def _run_as_service_account(repo: Path, kubeconfig: Path) -> tuple[bool, str]:
    source = ClusterSource(kubeconfigs=[str(kubeconfig)], contexts=list(TWO), request_timeout=5.0)
    try:
        result = run_pass(repo, source, SyncOptions(apply=True), LeaseSettings(cluster="mgmt-cluster"))
    except (LeaseError, LeaseUnavailable) as exc:
        return False, str(exc)
    if result.plan.discovery is not None:
        result.plan.discovery.close()
    failures = [c.message for c in result.changes.all() if c.action.is_error]
    failures += [f"{n}: {r.error}" for n, r in result.changes.clusters.items() if r.error]
    failures += result.errors
    return result.converged, "; ".join(failures)


def _variants() -> list[tuple[str, str, int, str]]:
    """(kind, label, rule index, verb) for every verb of every rule."""
    out = []
    for kind in ("ClusterRole", "Role"):
        for i, rule in enumerate(by_kind(kind)["rules"]):
            for verb in rule["verbs"]:
                out.append((kind, f"{kind} {'/'.join(rule['resources'])} -{verb}", i, verb))
    return out


def test_rbac_in_cronjob_yaml_is_sufficient_and_minimal(
    bookinfo: Clusters, api_clients: dict[str, ApiClient], kubeconfig: Path, tmp_path: Path
) -> None:
    sa_kubeconfig = bookinfo.kubeconfig_for_user(
        list(TWO), SA_USER, SA_GROUPS, path=tmp_path / "sa.kubeconfig"
    )
    admin = ClusterSource(kubeconfigs=[str(kubeconfig)], contexts=list(TWO), request_timeout=5.0)

    def attempt(cluster_role: dict[str, Any], role: dict[str, Any]) -> tuple[bool, str]:
        wipe(api_clients)
        repo = tmp_path / f"repo-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(EXAMPLE, repo)
        baseline = run_pass(repo, admin, SyncOptions(apply=True), LeaseSettings(cluster="mgmt-cluster"))
        assert baseline.converged
        kube.delete(
            api_clients["mgmt-cluster"],
            "coordination.k8s.io/v1",
            "Lease",
            "mesh-reconciler",
            namespace="mesh-reconciler",
        )
        _policies_b(repo)
        _install_rbac(api_clients, cluster_role, role)
        return _run_as_service_account(repo, sa_kubeconfig)

    ok, why = attempt(by_kind("ClusterRole"), by_kind("Role"))
    assert ok, f"the ServiceAccount's permissions in cronjob.yaml are not sufficient: {why}"

    survivors = []
    for kind, label, index, verb in _variants():
        cluster_role, role = by_kind("ClusterRole"), by_kind("Role")
        target = cluster_role if kind == "ClusterRole" else role
        target["rules"][index]["verbs"] = [v for v in target["rules"][index]["verbs"] if v != verb]
        target["rules"] = [r for r in target["rules"] if r["verbs"]]  # a rule with no verb is dropped
        ok, why = attempt(cluster_role, role)
        if ok:
            survivors.append(label)
    _install_rbac(api_clients, by_kind("ClusterRole"), by_kind("Role"))
    assert survivors == [], f"verbs not needed by a run (RBAC is not minimal): {survivors}"
