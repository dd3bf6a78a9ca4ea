"""LIST paging against a real API server: every item comes back, in as many requests as pages."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from kubeharness import Clusters
from kubernetes.client import ApiClient

from reconciler.clusters.kube import LIST_PAGE_SIZE, SERVICES, KubeClient
from reconciler.plan import ClusterSource, build_plan
from tests.integration.conftest import EXAMPLE

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("metadata_only", [False, True])
def test_small_pages_return_every_item_in_one_request_per_page(
    bookinfo: Clusters, api_clients: dict[str, ApiClient], metadata_only: bool
) -> None:
    whole = KubeClient(api_clients["mgmt-cluster"], "mgmt-cluster")
    paged = KubeClient(api_clients["mgmt-cluster"], "mgmt-cluster", page_size=2)
    everything = whole.list(SERVICES, metadata_only=metadata_only)
    assert 3 <= len(everything) < LIST_PAGE_SIZE
    assert sum(whole.requests.values()) == 1  # a collection of ordinary size is one request

    pages = paged.list(SERVICES, metadata_only=metadata_only)
    names = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in pages]
    assert names == [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everything]
    assert len(set(names)) == len(names)
    assert {o["kind"] for o in pages} == {"Service"}
    assert sum(paged.requests.values()) == math.ceil(len(everything) / 2)


@pytest.mark.parametrize("keep_raw", [False, True])
def test_listed_objects_are_kept_only_when_asked(
    bookinfo: Clusters, kubeconfig: Path, keep_raw: bool
) -> None:
    """A pass frees the listed inputs once the inventory is built; a snapshot export keeps them."""
    source = ClusterSource(kubeconfigs=[str(kubeconfig)], contexts=["mgmt-cluster"], keep_raw=keep_raw)
    with build_plan(EXAMPLE, source) as plan:
        state = plan.inventory.clusters["mgmt-cluster"]
        assert state.reachable and state.services and state.nodes
        assert plan.discovery is not None
        if keep_raw:
            kinds = {o["kind"] for o in plan.discovery.raw["mgmt-cluster"]}
            assert {"Node", "Service", "EndpointSlice"} <= kinds
        else:
            assert plan.discovery.raw == {}
