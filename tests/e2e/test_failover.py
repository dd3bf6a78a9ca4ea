"""Locality failover end to end: real API servers -> reconciler -> real Envoy -> real backends.

1. Policies (a VirtualMesh and a VirtualDestination for ``app: reviews``) are translated against real
   kube-apiservers (``build_plan`` over kubeconfig contexts), exactly as ``reconciler render`` does.
2. ``explain`` computes the priorities istiod would give a client in us-east-1/us-east-1a, and
   :func:`reconciler.dataplane.envoy.build_bootstrap` turns the rendered ServiceEntry + DestinationRule into the
   client's Envoy bootstrap. It is validated with ``envoy --mode validate`` and run.
3. One HTTP backend listens on each address the reconciler derived from the topology (a local
   service's ClusterIP, a remote cluster's east-west gateway); each answers with its name and can be
   switched to 503. Requests go through Envoy; its admin ``/clusters`` and ``/stats`` and its outlier
   event log show the ejections.

Declared test-only deviation: ``update_merge_window: 0s`` (Envoy's default is 1s and istiod leaves it),
so a second ejection reaches the load balancer at once and timings are not smeared by the merge
window. The two-region test also runs with Istio's own setting to show the outcome is the same. The
other differences from a real sidecar (static cluster, plaintext, no retries) are listed in
:data:`reconciler.dataplane.envoy.DEVIATIONS` and docs/failover.md.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from reconciler.dataplane.envoy import build_bootstrap, cluster_name, endpoint_priorities
from reconciler.dataplane.explain import Explanation, client_cluster, explain
from reconciler.findings import ObjectKey
from reconciler.locality import Locality
from reconciler.plan import ClusterSource, build_plan
from tests.e2e.backend import Backend
from tests.e2e.conftest import CLIENT_CLUSTER, BackendSpec, FailoverWorld
from tests.e2e.envoy_process import Client, EnvoyProcess, free_port, validate

pytestmark = [pytest.mark.integration, pytest.mark.envoy]

CLIENT = Locality("us-east-1", "us-east-1a")
VD_KEY = ObjectKey("VirtualDestination", "gloo-mesh", "reviews-global")
HOSTNAME = "reviews.global"
INTERVAL_S = 1.0
BASE_EJECTION_S = 5.0
FAILOVER_BOUND_S = 2 * INTERVAL_S
"""After the local hosts start failing, all answers come from the next priority within this bound."""
RECOVERY_BOUND_S = BASE_EJECTION_S + 2 * INTERVAL_S + 1.0
"""Ejected hosts come back at the first outlier sweep (every ``interval``) after ``baseEjectionTime``;
plus a second for Envoy's default merge window (Istio's setting) and slack."""
PACE_S = 0.02
STABLE = 10
"""Consecutive answers from the expected backends that count as "switched" (while one of two P0 hosts is
ejected P1 gets 30%: ten P1 answers in a row then have a probability of 0.3^10 ~ 6e-6)."""
SETTLED = 30
"""Consecutive answers needed to call the return to P0 complete (a 70/30 split passes 30 in a row
with probability 0.7^30 ~ 2e-5)."""
MESHES = {
    "mgmt-cluster": "istiod-istio-system-mgmt-cluster",
    "remote-cluster": "istiod-istio-system-remote-cluster",
    "cluster-3": "istiod-istio-system-cluster-3",
}


# --------------------------------------------------------------------------------------------- setup


def write_policies(root: Path, clusters: Sequence[str], port: int, to_regions: Sequence[str] = ()) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meshes = "".join(f"    - {{name: {MESHES[c]}, namespace: gloo-mesh}}\n" for c in clusters)
    (root / "virtual-mesh.yaml").write_text(
        "apiVersion: networking.mesh.gloo.solo.io/v1\nkind: VirtualMesh\n"
        "metadata: {name: virtual-mesh, namespace: gloo-mesh}\nspec:\n  meshes:\n" + meshes
    )
    directives = ""
    if to_regions:
        targets = ", ".join(f"{{region: {r}}}" for r in to_regions)
        directives = f"    failoverDirectives:\n      - {{from: {{region: us-east-1}}, to: [{targets}]}}\n"
    (root / "reviews-global.yaml").write_text(
        f"""apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: reviews-global, namespace: gloo-mesh}}
spec:
  hostname: {HOSTNAME}
  port: {{number: {port}, protocol: http}}
  virtualMesh: {{name: virtual-mesh, namespace: gloo-mesh}}
  localized:
    outlierDetection:
      consecutiveErrors: 1
      interval: {INTERVAL_S:g}s
      baseEjectionTime: {BASE_EJECTION_S:g}s
      maxEjectionPercent: 100
{directives}    destinationSelectors:
      - kubeServiceMatcher: {{labels: {{app: reviews}}}}
"""
    )
    return root


def plan_and_explain(world: FailoverWorld, policies: Path, contexts: Sequence[str]) -> Explanation:
    """Discovery + translation against the real API servers, then explain for the client."""
    source = ClusterSource(kubeconfigs=[str(world.kubeconfig)], contexts=list(contexts), request_timeout=5.0)
    plan = build_plan(policies, source)
    try:
        assert not [f.format() for f in plan.findings if f.is_error]
        assert all(st.reachable for st in plan.inventory.clusters.values())
        localities = {n: sorted(st.localities()) for n, st in plan.inventory.clusters.items()}
        assert client_cluster(plan.translation, localities, CLIENT) == CLIENT_CLUSTER
        return explain(plan.translation, VD_KEY, HOSTNAME, CLIENT, CLIENT_CLUSTER)
    finally:
        plan.close()


@dataclass
class Harness:
    envoy: EnvoyProcess
    client: Client
    backends: dict[str, Backend]  # by endpoint (address:port)
    cluster: str
    event_log: Path

    def names(self, endpoints: Sequence[str]) -> set[str]:
        return {self.backends[e].name for e in endpoints}


class HarnessFactory(Protocol):
    def __call__(
        self,
        explanation: Explanation,
        specs: Sequence[BackendSpec],
        mutate: Callable[[dict[str, Any]], None] | None = None,
        merge_window: str | None = "0s",
    ) -> Harness: ...


@pytest.fixture
def harness_factory(envoy_bin: Path, tmp_path: Path) -> Iterator[HarnessFactory]:
    """Starts backends + Envoy for an explanation; everything is stopped when the test ends."""
    with ExitStack() as stack:

        def start(
            explanation: Explanation,
            specs: Sequence[BackendSpec],
            mutate: Callable[[dict[str, Any]], None] | None = None,
            merge_window: str | None = "0s",
        ) -> Harness:
            listener_port = admin_port = free_port()
            while admin_port == listener_port:
                admin_port = free_port()
            event_log = tmp_path / "outlier-events.jsonl"
            bootstrap = build_bootstrap(
                explanation,
                listener_port=listener_port,
                admin_port=admin_port,
                update_merge_window=merge_window,  # "0s": test-only deviation, see the module docstring
                outlier_event_log=str(event_log),
            )
            expected = {f"{e.address}:{e.port}": e.priority for e in explanation.endpoints}
            assert endpoint_priorities(bootstrap) == expected
            if mutate is not None:
                mutate(bootstrap)
            config = tmp_path / "envoy.yaml"
            config.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
            checked = validate(envoy_bin, config)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            backends: dict[str, Backend] = {}
            for spec in specs:  # bound where the topology puts each service -- not read from the bootstrap
                backends[spec.endpoint] = stack.enter_context(Backend(spec.name, spec.address, spec.port))
            envoy = stack.enter_context(EnvoyProcess(envoy_bin, config, admin_port, tmp_path / "envoy.log"))
            client = Client(listener_port)
            stack.callback(client.close)
            return Harness(envoy, client, backends, cluster_name(explanation), event_log)

        yield start


# --------------------------------------------------------------------------------------------- driving


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic() when the answer arrived
    status: int
    body: str


def drive(
    client: Client,
    *,
    until: Callable[[Sample], bool],
    timeout: float,
    pace: float = PACE_S,
    stable: int = STABLE,
) -> list[Sample]:
    """Send requests until ``stable`` consecutive answers satisfy ``until`` (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    samples: list[Sample] = []
    run = 0
    while time.monotonic() < deadline:
        status, body = client.get()
        sample = Sample(time.monotonic(), status, body)
        samples.append(sample)
        run = run + 1 if until(sample) else 0
        if run >= stable:
            return samples
        time.sleep(pace)
    tail = Counter((s.status, s.body) for s in samples[-50:])
    raise AssertionError(
        f"not reached within {timeout}s after {len(samples)} requests; last 50: {dict(tail)}"
    )


def burst(client: Client, n: int) -> Counter[tuple[int, str]]:
    return Counter(client.get() for _ in range(n))


def switch_time(samples: Sequence[Sample], stable: int = STABLE) -> float:
    """When the final stable run began (``time.monotonic()``)."""
    return samples[-stable].t


def ok_from(names: set[str]) -> Callable[[Sample], bool]:
    return lambda s: s.status == 200 and s.body in names


def events(path: Path, action: str, count: int, timeout: float = 3.0) -> list[dict[str, object]]:
    """The outlier event log's ``action`` events, waiting (bounded) until ``count`` are flushed."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        found = [e for e in map(json.loads, filter(None, text.splitlines())) if e.get("action") == action]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    deadline = time.monotonic() + max(timeout, 0.0)
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:.2f}s")
        time.sleep(step)


def levels_of(explanation: Explanation) -> list[list[str]]:
    return [[f"{e.address}:{e.port}" for e in level] for level in explanation.priorities]


# --------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "merge_window", ["0s", None], ids=["merge-window-0s", "istio-default-merge-window-1s"]
)
def test_local_failover_to_remote_region_and_back(
    failover_world: FailoverWorld, tmp_path: Path, harness_factory: HarnessFactory, merge_window: str | None
) -> None:
    """v1+v2 (us-east-1a, P0) fail -> v3 (us-east-2 via its gateway, P1) -> v1+v2 again.

    Run with the test's ``update_merge_window: 0s`` and with Istio's own setting (Envoy's 1s default):
    the outcome is the same; the merge window only lets the second failing host take traffic (and
    answer 503) for up to a second longer.
    """
    two = ("mgmt-cluster", "remote-cluster")
    policies = write_policies(tmp_path / "policies", two, failover_world.service_port)
    explanation = plan_and_explain(failover_world, policies, two)
    specs = failover_world.backends(two)
    by_name = {s.name: s.endpoint for s in specs}
    v1, v2, v3 = (
        by_name["reviews-v1@mgmt-cluster"],
        by_name["reviews-v2@mgmt-cluster"],
        by_name["reviews-v3@remote-cluster"],
    )

    # What the reconciler rendered is what the topology says: local ClusterIPs at P0, the gateway at P1.
    assert levels_of(explanation) == [sorted([v1, v2]), [v3]]
    dr = explanation.destination_rule.body["spec"]["trafficPolicy"]
    assert dr["outlierDetection"] == {
        "consecutive5xxErrors": 1,
        "interval": "1s",
        "baseEjectionTime": "5s",
        "maxEjectionPercent": 100,
    }

    h = harness_factory(explanation, specs, merge_window=merge_window)
    local = h.names([v1, v2])
    remote = h.names([v3])

    # 1. healthy: everything stays local, Envoy shows the priorities explain computed
    healthy = burst(h.client, 40)
    assert set(healthy) == {(200, n) for n in local}, healthy
    hosts = h.envoy.hosts(h.cluster)
    assert {ep: int(row["priority"]) for ep, row in hosts.items()} == {v1: 0, v2: 0, v3: 1}
    assert {row["health_flags"] for row in hosts.values()} == {"healthy"}

    # 2. v1 and v2 fail: answers come from v3 within the bound
    failed_at = time.monotonic()
    h.backends[v1].fail()
    h.backends[v2].fail()
    failing = drive(h.client, until=ok_from(remote), timeout=FAILOVER_BOUND_S + 5)
    failover_s = switch_time(failing) - failed_at
    errors = [s for s in failing if s.status != 200]
    assert failover_s <= FAILOVER_BOUND_S, failing
    assert {s.body for s in errors} <= local, errors  # the failing hosts' own 503s, no "no healthy upstream"
    after = burst(h.client, 20)
    assert after == Counter({(200, next(iter(remote))): 20}), after
    hosts = h.envoy.hosts(h.cluster)
    for ep in (v1, v2):
        assert "/failed_outlier_check" in hosts[ep]["health_flags"], hosts[ep]
        assert hosts[ep]["priority"] == "0"
    assert hosts[v3]["health_flags"] == "healthy" and hosts[v3]["priority"] == "1"
    stats = h.envoy.stats(h.cluster)
    assert stats["outlier_detection.ejections_active"] == 2, stats
    assert stats["outlier_detection.ejections_enforced_consecutive_5xx"] >= 2, stats
    assert stats.get("outlier_detection.ejections_overflow", 0) == 0, stats
    admin_view = [
        f"{h.cluster}::{ep}::{k}::{hosts[ep][k]}" for ep in (v1, v2, v3) for k in ("health_flags", "priority")
    ]
    shown = ("active", "detected_consecutive_5xx", "enforced_consecutive_5xx", "enforced_total", "overflow")
    admin_view += [
        f"cluster.{h.cluster}.outlier_detection.ejections_{k}: {stats[f'outlier_detection.ejections_{k}']}"
        for k in shown
    ]
    ejections = events(h.event_log, "EJECT", 2)
    assert sorted(str(e.get("upstream_url")) for e in ejections) == sorted([v1, v2]), ejections

    # 3. v1 and v2 recover; once baseEjectionTime has passed, traffic returns to them
    healed_at = time.monotonic()
    h.backends[v1].fail(False)
    h.backends[v2].fail(False)
    recovering = drive(h.client, until=ok_from(local), timeout=RECOVERY_BOUND_S + 5, pace=0.05, stable=1)
    first_back_s = recovering[-1].t - errors[0].t  # the first ejection happened at the first 503
    assert all(s.status == 200 for s in recovering), "no errors while the remote region serves"
    assert BASE_EJECTION_S - 0.25 <= first_back_s <= RECOVERY_BOUND_S, (first_back_s, recovering[-15:])
    # the other host is un-ejected by the same or the next outlier sweep; with Envoy's default merge
    # window the change reaches the load balancer up to 1 s later. Until then P0 gets 70% (1 of 2 hosts).
    settled = drive(
        h.client,
        until=ok_from(local),
        timeout=RECOVERY_BOUND_S - (time.monotonic() - errors[-1].t) + 2,
        stable=SETTLED,
    )
    assert all(s.status == 200 for s in settled)
    all_back_s = switch_time(settled, SETTLED) - errors[0].t
    assert h.envoy.stats(h.cluster)["outlier_detection.ejections_active"] == 0
    back = burst(h.client, 40)
    assert set(back) == {(200, n) for n in local}, back
    assert {row["health_flags"] for row in h.envoy.hosts(h.cluster).values()} == {"healthy"}
    unejections = events(h.event_log, "UNEJECT", 2)
    assert sorted(str(e.get("upstream_url")) for e in unejections) == sorted([v1, v2]), unejections
    print(
        f"\n[update_merge_window {merge_window or 'unset (1s)'}] "
        f"failover: all answers from v3 {failover_s * 1000:.0f} ms after v1+v2 turned 503 "
        f"({len(errors)} client-visible 503s in {len(failing)} requests); "
        f"ejections_enforced_consecutive_5xx={stats['outlier_detection.ejections_enforced_consecutive_5xx']}; "
        f"first answer from v1/v2 again {first_back_s:.2f} s after the first ejection, both back after "
        f"{all_back_s:.2f} s (they recovered {healed_at - errors[0].t:.2f} s after it)\n"
        "  Envoy admin while v1+v2 were ejected:\n    " + "\n    ".join(admin_view)
    )


@pytest.mark.parametrize(
    "to_regions",
    [("eu-west-1", "us-east-2"), ("us-east-2", "eu-west-1")],
    ids=["eu-first", "us-east-2-first"],
)
def test_three_regions_fallback_order_matches_explain(
    failover_world: FailoverWorld,
    tmp_path: Path,
    harness_factory: HarnessFactory,
    to_regions: tuple[str, str],
) -> None:
    three = ("mgmt-cluster", "remote-cluster", "cluster-3")
    policies = write_policies(tmp_path / "policies", three, failover_world.service_port, to_regions)
    explanation = plan_and_explain(failover_world, policies, three)
    specs = failover_world.backends(three)
    region_of = {s.endpoint: s.region for s in specs}
    levels = levels_of(explanation)
    # explain: the local zone first, then the directive's regions in the order written
    assert [sorted({region_of[e] for e in level}) for level in levels] == [
        ["us-east-1"],
        [to_regions[0]],
        [to_regions[1]],
    ]
    lb = explanation.destination_rule.body["spec"]["trafficPolicy"]["loadBalancer"]["localityLbSetting"]
    assert "failoverPriority" in lb  # an ordered list of fallbacks needs failoverPriority, not failover

    h = harness_factory(explanation, specs)
    hosts = h.envoy.hosts(h.cluster)
    assert {ep: int(row["priority"]) for ep, row in hosts.items()} == {
        e: i for i, level in enumerate(levels) for e in level
    }

    observed: list[set[str]] = []
    healthy = burst(h.client, 30)
    observed.append({body for _, body in healthy})
    assert set(healthy) == {(200, n) for n in h.names(levels[0])}, healthy
    timings = []
    for failing_level, next_level in ((0, 1), (1, 2)):
        started = time.monotonic()
        for ep in levels[failing_level]:
            h.backends[ep].fail()
        samples = drive(h.client, until=ok_from(h.names(levels[next_level])), timeout=FAILOVER_BOUND_S + 5)
        timings.append(switch_time(samples) - started)
        assert timings[-1] <= FAILOVER_BOUND_S, samples
        answers = burst(h.client, 20)
        assert set(answers) == {(200, n) for n in h.names(levels[next_level])}, answers
        observed.append({body for _, body in answers})
        for ep in levels[failing_level]:
            assert "/failed_outlier_check" in h.envoy.hosts(h.cluster)[ep]["health_flags"]

    # the order traffic actually took through Envoy is the order explain printed
    assert observed == [h.names(level) for level in levels]

    # every priority ejected: panic routing is off (minHealthPercent 0), so Envoy itself answers 503
    for ep in levels[2]:
        h.backends[ep].fail()
    drive(
        h.client,
        until=lambda s: s.status == 503 and s.body == "no healthy upstream",
        timeout=FAILOVER_BOUND_S + 5,
    )
    stats = h.envoy.stats(h.cluster)
    assert stats["outlier_detection.ejections_active"] == len(specs), stats
    assert stats["upstream_cx_none_healthy"] > 0, stats
    print(
        f"\n{' -> '.join(to_regions)}: observed "
        + " -> ".join("/".join(sorted(names)) for names in observed)
        + f"; failover to P1 {timings[0] * 1000:.0f} ms, to P2 {timings[1] * 1000:.0f} ms"
    )


def test_control_envoy_default_max_ejection_never_fails_over(
    failover_world: FailoverWorld, tmp_path: Path, harness_factory: HarnessFactory
) -> None:
    """Negative control: the same run without ``max_ejection_percent`` (what Istio sends when the DR leaves
    ``maxEjectionPercent`` unset, solo-io/gloo-mesh#948) ejects nothing -- so the test above can tell."""
    two = ("mgmt-cluster", "remote-cluster")
    policies = write_policies(tmp_path / "policies", two, failover_world.service_port)
    explanation = plan_and_explain(failover_world, policies, two)
    specs = failover_world.backends(two)

    def drop_max_ejection(bootstrap: dict[str, Any]) -> None:
        del bootstrap["static_resources"]["clusters"][0]["outlier_detection"]["max_ejection_percent"]

    h = harness_factory(explanation, specs, drop_max_ejection)
    local = [s.endpoint for s in specs if s.cluster == CLIENT_CLUSTER]
    for ep in local:
        h.backends[ep].fail()
    answers = Counter(h.client.get() for _ in range(40))
    assert {status for status, _ in answers} == {503}, answers
    assert {n for _, n in answers} == h.names(local)  # still sent to the failing local hosts, never to v3
    stats = h.envoy.stats(h.cluster)
    assert stats["outlier_detection.ejections_active"] == 0, stats
    assert stats["outlier_detection.ejections_overflow"] > 0, stats
