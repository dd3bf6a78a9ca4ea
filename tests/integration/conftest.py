"""Fixtures for engine tests: the bookinfo topology seeded once, managed objects wiped per test."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubeharness import Clusters, kube
from kubeharness.seed import bookinfo_three_regions, seed_cluster
from kubernetes.client import ApiClient

from reconciler.clusters.kube import ISTIO_RESOURCES, LEASES
from reconciler.plan import ClusterSource

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
TWO = ("mgmt-cluster", "remote-cluster")
LEASE_NAMESPACE = "mesh-reconciler"


@pytest.fixture(scope="session")
def bookinfo(clusters: Clusters, api_clients: dict[str, ApiClient]) -> Clusters:
    """The bundled example's topology in all three clusters (cluster-3: eu-west-1, another reviews)."""
    for name, topology in bookinfo_three_regions().items():
        result = seed_cluster(api_clients[name], topology)
        assert not result.skipped, result.skipped
        kube.apply(
            api_clients[name],
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}},
        )
    return clusters


def wipe(api_clients: dict[str, ApiClient]) -> None:
    """Delete everything a previous test made with our label, any leftover user objects and the lease."""
    for api in api_clients.values():
        for resource in ISTIO_RESOURCES.values():
            for obj in kube.list_items(api, resource.api_version, resource.kind):
                meta = obj["metadata"]
                with contextlib.suppress(Exception):
                    kube.delete(
                        api, resource.api_version, resource.kind, meta["name"], namespace=meta["namespace"]
                    )
        with contextlib.suppress(Exception):
            kube.delete(api, LEASES.api_version, "Lease", "mesh-reconciler", namespace=LEASE_NAMESPACE)


@pytest.fixture
def fresh(bookinfo: Clusters, api_clients: dict[str, ApiClient]) -> Iterator[Clusters]:
    wipe(api_clients)
    yield bookinfo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A private copy of the bundled example policies that a test may edit."""
    dest = tmp_path / "policies"
    shutil.copytree(EXAMPLE, dest)
    return dest


@pytest.fixture
def two_clusters(kubeconfig: Path) -> ClusterSource:
    """Live state from mgmt-cluster and remote-cluster, as the example's reconciler.yaml names them."""
    return ClusterSource(kubeconfigs=[str(kubeconfig)], contexts=list(TWO), request_timeout=5.0)


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Platform Team",
    "GIT_AUTHOR_EMAIL": "platform@example.com",
    "GIT_COMMITTER_NAME": "Platform Team",
    "GIT_COMMITTER_EMAIL": "platform@example.com",
}


def git(cwd: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), **GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repository holding the bundled example, and a user's working clone of it."""
    bare = tmp_path / "policy.git"
    git(tmp_path, "init", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", str(bare), str(work))
    for item in EXAMPLE.iterdir():
        shutil.copy(item, work / item.name)
    git(work, "add", "-A")
    git(work, "commit", "-m", "bookinfo locality failover")
    git(work, "push", "origin", "HEAD:main")
    return bare, work
