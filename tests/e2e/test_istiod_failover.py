"""Real traffic failing over where ALL of Envoy's configuration comes from a real istiod.

The reconciler applies a VirtualDestination (ordered failover us-east-1 -> eu-west-1 -> us-east-2) to
three real API servers; a real istiod reads mgmt-cluster's API server and programs a real Envoy
sidecar in us-east-1/us-east-1a over ADS (clusters, endpoints and -- through a static RDS probe
listener -- routes). Backends listen on the addresses the rendered ServiceEntry names and terminate
the ISTIO_MUTUAL TLS the sidecar originates (certificates from the test-only SDS stand-in).

Unlike tests/e2e/test_failover.py nothing here is restated by us: priorities, outlier detection,
TLS, retries and routes are istiod's. The order in which traffic moves is compared with
``explain --failed``.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from istioharness import FakeSds, Istiod, Sidecar
from kubeharness import kube
from kubeharness.kubeconfig import write_kubeconfig

from reconciler.dataplane.explain import Explanation, explain_for
from reconciler.engine.lease import LeaseSettings
from reconciler.engine.sync import SyncOptions
from reconciler.locality import Locality
from reconciler.plan import ClusterSource
from reconciler.reconcile import run_pass
from tests.conftest import require_istio
from tests.e2e.backend import Backend
from tests.e2e.conftest import CLIENT_CLUSTER, CLUSTERS, FailoverWorld
from tests.e2e.envoy_process import Client
from tests.e2e.test_failover import (
    BASE_EJECTION_S,
    FAILOVER_BOUND_S,
    HOSTNAME,
    RECOVERY_BOUND_S,
    drive,
    ok_from,
    write_policies,
)

pytestmark = [pytest.mark.integration, pytest.mark.envoy, pytest.mark.istiod]

CLIENT = Locality("us-east-1", "us-east-1a")
ALL = tuple(c.name for c in CLUSTERS)
RETRY_SLACK_S = 1.0
"""istiod's default route retries (2, on 503 among others) can send a request to a failing host that
is not ejected yet; allow one more outlier interval for both local hosts to be ejected."""


@dataclass
class IstiodWorld:
    istiod: Istiod
    sds: FakeSds
    policies: Path
    source: ClusterSource


@pytest.fixture
def istiod_world(failover_world: FailoverWorld, tmp_path: Path) -> Iterator[IstiodWorld]:
    assets = require_istio()
    api = failover_world.clusters.api_client(CLIENT_CLUSTER)
    kube.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh-reconciler"}})
    policies = write_policies(
        tmp_path / "policies", ALL, failover_world.service_port, to_regions=("eu-west-1", "us-east-2")
    )
    source = ClusterSource(
        kubeconfigs=[str(failover_world.kubeconfig)], contexts=list(ALL), request_timeout=10.0
    )
    result = run_pass(policies, source, SyncOptions(apply=True), LeaseSettings(cluster=CLIENT_CLUSTER))
    assert not result.changes.has_errors and not result.invalid
    own = write_kubeconfig(
        tmp_path / "mgmt.kubeconfig", [failover_world.clusters[CLIENT_CLUSTER].kubeconfig_entry()]
    )
    with ExitStack() as stack:
        sds = stack.enter_context(FakeSds(tmp_path / "sds", assets))
        istiod = stack.enter_context(Istiod(own, CLIENT_CLUSTER, tmp_path / "istiod", assets))
        yield IstiodWorld(istiod, sds, policies, source)
    # the objects stay: the next test's run_pass prunes or rewrites what it owns


def explained(world: IstiodWorld, failed: tuple[str, ...] = ()) -> Explanation:
    result = run_pass(world.policies, world.source, SyncOptions(apply=False))
    return explain_for(result.plan, "reviews-global", CLIENT, failed=failed)


def serving(explanation: Explanation) -> set[str]:
    """Endpoints of the first priority that still receives traffic after the ejections."""
    level = next(i for i, share in enumerate(explanation.shares) if share > 0)
    return {f"{e.address}:{e.port}" for e in explanation.priorities[level] if not e.ejected}


def test_traffic_fails_over_in_explains_order_through_istiod(
    failover_world: FailoverWorld, istiod_world: IstiodWorld, envoy_bin: Path, tmp_path: Path
) -> None:
    world = istiod_world
    port = failover_world.service_port
    specs = {s.endpoint: s for s in failover_world.backends(ALL)}
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(world.sds.cert_chain, world.sds.key)
    route = str(port)
    with ExitStack() as stack:
        backends = {
            ep: stack.enter_context(Backend(spec.name, spec.address, spec.port, tls=tls))
            for ep, spec in specs.items()
        }
        proxy = stack.enter_context(
            Sidecar(
                envoy_bin,
                world.istiod,
                world.sds,
                tmp_path / "sidecar",
                locality=(CLIENT.region, CLIENT.zone),
                route_names=(route,),
            )
        )
        cluster = f"outbound|{port}||{HOSTNAME}"
        expected = explained(world)
        want = {f"{e.address}:{e.port}": e.priority for e in expected.endpoints}
        assert set(want) == set(specs)  # every backend the topology defines is an endpoint
        proxy.wait_for_hosts(cluster, count=len(want))
        assert proxy.wait_for_priorities(cluster, want) == want
        assert proxy.routes(route)[f"{HOSTNAME}:{port}"] == [cluster]
        client = Client(proxy.route_ports[route])
        stack.callback(client.close)
        names = {ep: b.name for ep, b in backends.items()}

        def answered_by(endpoints: set[str]) -> set[str]:
            return {names[ep] for ep in endpoints}

        # 1. healthy: local endpoints only (P0), exactly as explain says
        local = serving(expected)
        drive(client, until=ok_from(answered_by(local)), timeout=20, stable=20)

        # 2. the local cluster fails -> explain --failed mgmt-cluster says where traffic goes next
        step1 = serving(explained(world, failed=(CLIENT_CLUSTER,)))
        assert {specs[ep].cluster for ep in step1} == {"cluster-3"}  # the first `to:` region, eu-west-1
        failed_at = time.monotonic()
        for ep in local:
            backends[ep].fail()
        samples = drive(client, until=ok_from(answered_by(step1)), timeout=FAILOVER_BOUND_S + 10)
        first_switch = samples[-10].t - failed_at
        assert first_switch <= FAILOVER_BOUND_S + RETRY_SLACK_S, first_switch

        # 3. eu-west-1 fails too -> the second `to:` region
        step2 = serving(explained(world, failed=(CLIENT_CLUSTER, "cluster-3")))
        assert {specs[ep].cluster for ep in step2} == {"remote-cluster"}
        for ep in step1:
            backends[ep].fail()
        drive(client, until=ok_from(answered_by(step2)), timeout=FAILOVER_BOUND_S + 10)
        flags = {
            f"{h['address']['socket_address']['address']}:{h['address']['socket_address']['port_value']}": h
            for h in proxy.hosts(cluster)
        }
        for ep in local | step1:
            assert flags[ep].get("health_status", {}).get("failed_outlier_check") is True, flags[ep]

        # 4. everything recovers -> back to the local endpoints after baseEjectionTime
        recovered_at = time.monotonic()
        for backend in backends.values():
            backend.fail(False)
        drive(client, until=ok_from(answered_by(local)), timeout=RECOVERY_BOUND_S + BASE_EJECTION_S + 10)
        assert proxy.rejected_updates() == {}
    print(
        f"\nistiod-configured failover: local->eu-west-1 after {first_switch:.2f}s; "
        f"recovered after {time.monotonic() - recovered_at:.2f}s"
    )
