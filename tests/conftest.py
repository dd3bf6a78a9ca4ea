"""Shared pytest fixtures: real local Kubernetes control planes (see docs/harness.md).

* ``integration``-marked tests need kube-apiserver/etcd (``tools/build-k8s-assets.sh``). When the
  binaries are missing they are SKIPPED with instructions -- unless ``CI=true``, where they FAIL.
* ``clusters`` (session): three independent control planes ``mgmt-cluster``, ``remote-cluster``
  and ``cluster-3`` with the Istio networking CRDs, started once per session.
* ``api_clients`` (session): admin ``ApiClient`` per cluster name (from the shared kubeconfig).
* ``clean_namespace`` (function): a fresh, uniquely named namespace created in every cluster.

Unit tests never touch any of this and run without the binaries.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from istioharness import IstioAssets, find_istio_assets, missing_istio_message
from kubeharness import Clusters, find_binaries, kube, missing_binaries_message, start_clusters
from kubeharness.binaries import Binaries
from kubernetes.client import ApiClient

CLUSTER_NAMES = ("mgmt-cluster", "remote-cluster", "cluster-3")

_binaries_cache: list[Binaries | None] = []


def _binaries() -> Binaries | None:
    if not _binaries_cache:
        _binaries_cache.append(find_binaries())
    return _binaries_cache[0]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_k8s_binaries() -> Binaries:
    """Skip (locally) or fail (CI=true) the current test when the binaries are missing."""
    found = _binaries()
    if found is None:
        msg = missing_binaries_message()
        if _in_ci():
            pytest.fail(f"CI=true and {msg}", pytrace=False)
        pytest.skip(msg)
    return found


def require_istio() -> IstioAssets:
    """The real istiod build (``tools/build-istio-assets.sh``); skip locally, FAIL under CI=true."""
    found = find_istio_assets()
    if found is None:
        if _in_ci():
            pytest.fail(f"CI=true and {missing_istio_message()}", pytrace=False)
        pytest.skip(missing_istio_message())
    return found


def pytest_configure(config: pytest.Config) -> None:
    """``diff`` keeps builds under ~/.cache by default: a test session keeps them in its own temp
    directory (inherited by every CLI the tests start) instead of leaving one per test tree there."""
    if "RECONCILER_BUILD_CACHE_DIR" not in os.environ:
        import tempfile

        os.environ["RECONCILER_BUILD_CACHE_DIR"] = tempfile.mkdtemp(prefix="reconciler-builds-")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("integration") is not None:
        require_k8s_binaries()


@pytest.fixture(scope="session")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clusters]:
    """Three real control planes for the whole session; always torn down (finalizer + atexit)."""
    binaries = require_k8s_binaries()
    keep = os.environ.get("KUBEHARNESS_KEEP_WORKDIR") == "1"
    workdir = tmp_path_factory.mktemp("kubeharness") if keep else None

    # Turn SIGTERM into KeyboardInterrupt so pytest still runs the session teardown below.
    previous: Any = None
    with contextlib.suppress(ValueError):  # not in the main thread
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

            def on_sigterm(signum: int, frame: FrameType | None) -> None:
                raise KeyboardInterrupt(f"signal {signum}")

            previous = signal.signal(signal.SIGTERM, on_sigterm)
    started = start_clusters(list(CLUSTER_NAMES), workdir, binaries=binaries)
    try:
        yield started
    finally:
        started.stop()
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, previous)


@pytest.fixture(autouse=True)
def _heal_clusters(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used ``clusters``, restart anything its fault injection left stopped."""
    yield
    if "clusters" in request.fixturenames:
        healthy: Clusters = request.getfixturevalue("clusters")
        healthy.ensure_running()


@pytest.fixture(scope="session")
def kubeconfig(clusters: Clusters) -> Path:
    """The admin kubeconfig with one context per cluster (context name == cluster name)."""
    return clusters.kubeconfig_path


@pytest.fixture(scope="session")
def api_clients(clusters: Clusters) -> dict[str, ApiClient]:
    """Admin ``ApiClient`` per cluster name, each loaded from its kubeconfig context."""
    return {name: clusters.api_client(name) for name in clusters.names}


def _namespace_name(nodeid: str) -> str:
    test = re.sub(r"[^a-z0-9-]+", "-", nodeid.rsplit("::", 1)[-1].lower()).strip("-")
    return f"t-{test[:40].strip('-')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def clean_namespace(request: pytest.FixtureRequest, api_clients: dict[str, ApiClient]) -> Iterator[str]:
    """A unique namespace, created in every cluster.

    Deleted afterwards without waiting: there is no namespace controller, so it just stays
    ``Terminating`` (which is why every test gets a fresh name).
    """
    name = _namespace_name(request.node.nodeid)
    for api in api_clients.values():
        kube.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    for api in api_clients.values():
        with contextlib.suppress(Exception):
            kube.delete(api, "v1", "Namespace", name)
