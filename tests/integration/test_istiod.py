"""Proof with the real control plane: what we render, fed through a REAL istiod into a REAL Envoy.

Four real API servers (one per region), one real istiod per cluster (multi-primary: each reads only its
own API server, built by ``tools/build-istio-assets.sh``), and for every client locality of the fleet a
real Envoy that presents itself to that cluster's istiod as a sidecar in that locality. The reconciler
applies the policies (``run_pass``, as ``reconcile`` does); the tests then read what Envoy received
from istiod (admin ``/clusters``, ``/config_dump``, ``/stats``) and compare it with
``reconciler explain`` for the same client.

Stood in (see docs/failover.md): istio-agent's SDS (``tools/fakesds``, a test-only certificate
server, so the ISTIO_MUTUAL clusters can warm), and istiod's sidecar *listeners* (istio-proxy-only
filters an upstream Envoy cannot load: routes are read through a static RDS probe listener instead).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from istioharness import FakeSds, IstioAssets, Istiod, Sidecar
from kubeharness import Clusters, kube, seed_cluster, start_clusters
from kubeharness.crds import load_crds
from kubeharness.kubeconfig import write_kubeconfig
from kubeharness.seed import Istiod as SeededIstiod
from kubeharness.seed import bookinfo_topology
from typer.testing import CliRunner

from reconciler.clusters.inventory import control_plane_messages
from reconciler.commands.app import app
from reconciler.dataplane.envoy import build_cluster
from reconciler.dataplane.explain import Explanation, explain_for
from reconciler.dataplane.priorities import LbEndpoint, istio_priorities, istio_rules
from reconciler.engine.lease import LeaseSettings
from reconciler.engine.sync import SyncOptions
from reconciler.locality import CLUSTER_LABEL, NETWORK_LABEL, REGION_LABEL, ZONE_LABEL, Locality
from reconciler.plan import ClusterSource
from reconciler.reconcile import run_pass
from tests.conftest import require_istio, require_k8s_binaries
from tests.e2e.envoy_process import require_envoy
from tests.integration.conftest import git
from tests.integration.test_reconcile_git import status_doc

pytestmark = [pytest.mark.integration, pytest.mark.envoy, pytest.mark.istiod]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
LEASE_NAMESPACE = "mesh-reconciler"


@dataclass(frozen=True)
class Region:
    cluster: str
    locality: Locality
    versions: tuple[str, ...]


FLEET = (
    Region("mgmt-cluster", Locality("us-east-1", "us-east-1a"), ("v1", "v2")),
    Region("remote-cluster", Locality("us-east-2", "us-east-2b"), ("v3",)),
    Region("cluster-3", Locality("eu-west-1", "eu-west-1a"), ("v1",)),
    Region("cluster-4", Locality("ap-south-1", "ap-south-1a"), ("v2",)),
)
CLUSTERS = tuple(r.cluster for r in FLEET)


@dataclass
class Fleet:
    clusters: Clusters
    assets: IstioAssets
    envoy: Path
    istiods: dict[str, Istiod]
    sds: FakeSds
    workdir: Path

    def source(self, contexts: Sequence[str] = CLUSTERS) -> ClusterSource:
        return ClusterSource(
            kubeconfigs=[str(self.clusters.kubeconfig_path)], contexts=list(contexts), request_timeout=10.0
        )

    def sidecar(self, cluster: str, name: str, **kwargs: object) -> Sidecar:
        return Sidecar(
            self.envoy,
            self.istiods[cluster],
            self.sds,
            self.workdir / "sidecars" / name,
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    envoy = require_envoy()
    assets = require_istio()
    binaries = require_k8s_binaries()
    workdir = tmp_path_factory.mktemp("istiod-fleet")
    # The seeded istiod Deployments name the release that really runs, so discovery (and explain)
    # pick that release's priority rules.
    image = f"docker.io/istio/pilot:{assets.release}-dev"
    clusters = start_clusters(list(CLUSTERS), binaries=binaries, crds=load_crds(assets.crds))
    istiods: dict[str, Istiod] = {}
    sds = FakeSds(workdir / "sds", assets)
    try:
        for index, region in enumerate(FLEET):
            topology = bookinfo_topology(
                region.cluster,
                region=region.locality.region,
                zone=region.locality.zone,
                reviews_versions=region.versions,
                gateway_address=f"172.18.0.{10 + index}",
            )
            topology = dataclasses.replace(topology, istiod=SeededIstiod(image=image))
            api = clusters.api_client(region.cluster)
            result = seed_cluster(api, topology)
            assert not result.skipped, result.skipped
            kube.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}})
        sds.start()
        for region in FLEET:
            # pilot-discovery has no --context: one kubeconfig per cluster, its current context.
            own = write_kubeconfig(
                workdir / f"{region.cluster}.kubeconfig", [clusters[region.cluster].kubeconfig_entry()]
            )
            # mgmt-cluster's istiod also writes status and analysis messages (as with
            # PILOT_ENABLE_STATUS=true + enableAnalysis in a cluster): the Git status reports them.
            istiod = Istiod(
                own,
                region.cluster,
                workdir / f"istiod-{region.cluster}",
                assets,
                status=region.cluster == "mgmt-cluster",
            )
            istiod.start()
            istiods[region.cluster] = istiod
        yield Fleet(clusters, assets, envoy, istiods, sds, workdir)
    finally:
        for istiod in istiods.values():
            istiod.stop()
        sds.stop()
        clusters.stop()


# --------------------------------------------------------------------------------------------- policies

VIRTUAL_MESH = """\
apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {{name: virtual-mesh, namespace: gloo-mesh}}
spec:
  meshes:
{meshes}
"""

VIRTUAL_DESTINATION = """\
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: {name}, namespace: gloo-mesh}}
spec:
  hostname: {host}
  port: {{number: 9080, protocol: http}}
  virtualMesh: {{name: virtual-mesh, namespace: gloo-mesh}}
  localized:
    outlierDetection: {{consecutiveErrors: 1, interval: 5s, baseEjectionTime: 120s, maxEjectionPercent: 100}}
{directives}    destinationSelectors:
      - kubeServiceMatcher: {{labels: {{app: reviews}}}}
"""


def write_fleet_policies(root: Path, clusters: Sequence[str], vds: dict[str, str]) -> Path:
    """A policy repository over ``clusters``: one VirtualMesh, and a VirtualDestination per entry of
    ``vds`` (name -> failoverDirectives YAML, indented under ``localized``, may be empty)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "reconciler.yaml").write_text(
        "clusters:\n"
        + "".join(f"  {c}: {c}\n" for c in clusters)
        + "managementCluster: mgmt-cluster\nprune: {enabled: true, maxPruneRatio: 1.0}\n"
    )
    meshes = "".join(f"    - {{name: istiod-istio-system-{c}, namespace: gloo-mesh}}\n" for c in clusters)
    (root / "virtual-mesh.yaml").write_text(VIRTUAL_MESH.format(meshes=meshes))
    for name, directives in vds.items():
        (root / f"{name}.yaml").write_text(
            VIRTUAL_DESTINATION.format(name=name, host=f"{name}.global", directives=directives)
        )
    return root


def directives(source: str, targets: Sequence[str]) -> str:
    """``failoverDirectives`` YAML: each locality is REGION[/ZONE]."""

    def spec(path: str) -> str:
        region, _, zone = path.partition("/")
        return f"{{region: {region}" + (f", zone: {zone}" if zone else "") + "}"

    return (
        "    failoverDirectives:\n"
        f"      - from: {spec(source)}\n"
        f"        to: [{', '.join(spec(t) for t in targets)}]\n"
    )


def apply(fleet: Fleet, root: Path, contexts: Sequence[str] = CLUSTERS) -> None:
    # Each scenario replaces the previous one's objects: pruning all of them is intended here.
    options = SyncOptions(apply=True, allow_mass_prune=True)
    result = run_pass(root, fleet.source(contexts), options, LeaseSettings(cluster="mgmt-cluster"))
    assert not [f.format() for f in result.plan.findings if f.is_error]
    assert not result.changes.has_errors, result.changes


def explained(
    fleet: Fleet, root: Path, vd: str, client: Locality, contexts: Sequence[str] = CLUSTERS
) -> Explanation:
    """``reconciler explain VD --from CLIENT`` against the live fleet (what the CLI prints as JSON)."""
    result = run_pass(root, fleet.source(contexts), SyncOptions(apply=False))
    return explain_for(result.plan, vd, client)


def locality_parts(locality: Locality) -> tuple[str, ...]:
    return tuple(p for p in (locality.region, locality.zone, locality.subzone) if p)


def expected_priorities(explanation: Explanation) -> dict[str, int]:
    return {f"{e.address}:{e.port}": e.priority for e in explanation.endpoints}


def _set(values: dict[str, Any]) -> dict[str, Any]:
    """Protobuf JSON omits default values: drop them from both sides before comparing."""
    return {k: v for k, v in values.items() if v not in (0, 0.0, False, "", None, {}, [])}


def envoy_config_differences(ours: dict[str, Any], proxy: Sidecar) -> list[str]:
    """Where ``reconciler envoy-config``'s cluster differs from the one istiod sent the same proxy."""
    theirs = proxy.cluster_config(ours["name"]) or {}
    differences = []
    for key in ("lb_policy", "connect_timeout"):
        if ours.get(key) != theirs.get(key, "ROUND_ROBIN" if key == "lb_policy" else None):
            differences.append(f"{key}: ours {ours.get(key)!r}, istiod {theirs.get(key)!r}")
    if _set(ours.get("outlier_detection", {})) != _set(theirs.get("outlier_detection", {})):
        differences.append(
            f"outlier_detection: ours {ours.get('outlier_detection')}, istiod {theirs.get('outlier_detection')}"
        )
    our_common, their_common = ours.get("common_lb_config", {}), theirs.get("common_lb_config", {})
    our_panic = our_common.get("healthy_panic_threshold", {}).get("value", 0)
    their_panic = their_common.get("healthy_panic_threshold", {}).get("value", 0)
    if our_panic != their_panic:
        differences.append(f"healthy_panic_threshold: ours {our_panic}, istiod {their_panic}")
    if ("locality_weighted_lb_config" in our_common) != ("locality_weighted_lb_config" in their_common):
        differences.append(f"locality_weighted_lb_config: ours {our_common}, istiod {their_common}")
    our_groups = sorted(
        (
            {
                "priority": g["priority"],
                "locality": "/".join(
                    g.get("locality", {}).get(k, "") for k in ("region", "zone", "sub_zone")
                ).rstrip("/"),
                "weight": g["load_balancing_weight"],
                "addresses": sorted(
                    f"{ep['endpoint']['address']['socket_address']['address']}:"
                    f"{ep['endpoint']['address']['socket_address']['port_value']}"
                    for ep in g["lb_endpoints"]
                ),
            }
            for g in ours["load_assignment"]["endpoints"]
        ),
        key=lambda g: (g["priority"], g["locality"], g["addresses"]),
    )
    their_groups = proxy.endpoint_groups(ours["name"])
    if our_groups != their_groups:
        differences.append(f"endpoint groups: ours {our_groups}, istiod {their_groups}")
    return differences


@dataclass
class Comparison:
    client: str
    cluster: str
    explain: dict[str, int]
    istiod: dict[str, int]
    envoy_config: list[str]
    """Differences between ``envoy-config``'s cluster and istiod's for the same proxy (empty: equal)."""


def compare_every_locality(
    fleet: Fleet, root: Path, vd: str, host: str, tmp: str, contexts: Sequence[str] = CLUSTERS
) -> list[Comparison]:
    """For each client locality of the fleet: explain's priorities vs what istiod sent that client."""
    rows: list[Comparison] = []
    for region in FLEET:
        if region.cluster not in contexts:
            continue
        expected = explained(fleet, root, vd, region.locality, contexts)
        assert expected.istio is not None and expected.istio.rules == fleet.assets.release
        want = expected_priorities(expected)
        name = f"{tmp}-{region.cluster}"
        with fleet.sidecar(region.cluster, name, locality=locality_parts(region.locality)) as proxy:
            proxy.wait_for_hosts(f"outbound|9080||{host}", count=len(want))
            got = proxy.wait_for_priorities(f"outbound|9080||{host}", want, timeout=10)
            assert proxy.rejected_updates() == {}
            assert proxy.warming() == []
            differences = envoy_config_differences(build_cluster(expected), proxy)
        rows.append(Comparison(region.locality.path, region.cluster, want, got, differences))
    return rows


def table(rows: Sequence[Comparison]) -> str:
    out = []
    for r in rows:
        order = sorted(r.istiod, key=lambda a: (r.istiod[a], a))
        out.append(f"{r.client:<24} {r.cluster:<15} " + " ".join(f"{a}=P{r.istiod[a]}" for a in order))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------- tests


def test_bundled_example_is_accepted_and_routed_by_istiod(fleet: Fleet, tmp_path: Path) -> None:
    """The bundled example as a newcomer runs it: every object accepted, the route reaches the sidecar,
    and the priorities istiod sends equal ``explain`` for both clusters' clients."""
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLE, root)
    two = ("mgmt-cluster", "remote-cluster")
    apply(fleet, root, two)
    with fleet.sidecar(
        "mgmt-cluster", "bundled-route", locality=("us-east-1", "us-east-1a"), route_names=("9080",)
    ) as proxy:
        routes = proxy.routes("9080")
        # TrafficPolicy reviews-shift-failover: reviews.bookinfo on mgmt-cluster -> reviews.global
        assert routes["reviews.bookinfo.svc.cluster.local:9080"] == ["outbound|9080||reviews.global"]
        cluster = proxy.cluster_config("outbound|9080||reviews.global")
        assert cluster is not None
        outlier = cluster["outlier_detection"]
        assert (
            outlier["consecutive_5xx"],
            outlier["base_ejection_time"],
            outlier["max_ejection_percent"],
        ) == (
            1,
            "120s",
            100,
        )
        assert (
            cluster["common_lb_config"]["healthy_panic_threshold"] == {}
        )  # panic mode off: fail over, not spread
        assert proxy.rejected_updates() == {}
    rows = compare_every_locality(fleet, root, "bookinfo-global", "reviews.global", "bundled", two)
    assert [r.explain for r in rows] == [r.istiod for r in rows], table(rows)
    assert [r.envoy_config for r in rows] == [[], []]
    # mgmt-cluster's client: its own reviews (ClusterIP, port 9080) first, remote-cluster's gateway next
    assert sorted((p, a.rsplit(":", 1)[1]) for a, p in rows[0].istiod.items()) == [(0, "9080"), (1, "15443")]
    for istiod in fleet.istiods.values():
        assert istiod.rejects() == {}


FLEET_SCENARIOS = {
    # 3 regions, ordered failover (ranked failoverPriority): us-east-1 -> eu-west-1, then us-east-2
    "three-region": (
        ("mgmt-cluster", "remote-cluster", "cluster-3"),
        directives("us-east-1", ["eu-west-1", "us-east-2"]),
    ),
    # 4 regions, ordered: us-east-1 -> ap-south-1, eu-west-1, us-east-2
    "four-region": (CLUSTERS, directives("us-east-1", ["ap-south-1", "eu-west-1", "us-east-2"])),
    # one target per source region: native `failover` rules
    "native": (CLUSTERS, directives("us-east-1", ["eu-west-1"])),
    # zone-level directive: ranked, with the zone/subzone proximity keys
    "zonal": (
        CLUSTERS,
        directives("us-east-1/us-east-1a", ["eu-west-1/eu-west-1a", "ap-south-1/ap-south-1a"]),
    ),
    # no directive: Istio's default locality order
    "default": (CLUSTERS, ""),
}


@pytest.mark.parametrize("scenario", list(FLEET_SCENARIOS))
def test_priorities_from_istiod_equal_explain_for_every_locality(
    fleet: Fleet, tmp_path: Path, scenario: str
) -> None:
    contexts, directive = FLEET_SCENARIOS[scenario]
    root = write_fleet_policies(tmp_path / "policies", contexts, {scenario: directive})
    apply(fleet, root, contexts)
    rows = compare_every_locality(fleet, root, scenario, f"{scenario}.global", scenario, contexts)
    print(f"\n[{scenario}] priorities istiod sent (= explain):\n{table(rows)}")
    assert len(rows) == len(contexts)
    for row in rows:
        assert row.istiod == row.explain, f"{scenario}:\n{table(rows)}"
        assert row.envoy_config == [], f"{scenario} {row.client}: envoy-config differs from istiod"
    mgmt = next(r for r in rows if r.cluster == "mgmt-cluster")
    levels = sorted(set(mgmt.istiod.values()))
    assert len(levels) > 1  # a us-east-1 client has somewhere to fail over to
    for istiod in fleet.istiods.values():
        assert istiod.rejects() == {}


def test_network_first_failover_priority_follows_the_running_release(fleet: Fleet, tmp_path: Path) -> None:
    """``failoverPriority: [topology.istio.io/network, region, zone]`` is where Istio 1.30 and 1.31
    differ. istiod's answer equals the rules of the release it reports, and not the other release's."""
    api = fleet.clusters.api_client("mgmt-cluster")
    endpoints = [  # (address, network, locality)
        ("10.96.7.1", "net-a", "us-east-1/us-east-1a"),
        ("10.96.7.2", "net-b", "us-east-1/us-east-1a"),
        ("10.96.7.3", "net-a", "eu-west-1/eu-west-1a"),
        ("10.96.7.4", "net-b", "eu-west-1/eu-west-1a"),
    ]
    se = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "netfirst", "namespace": "istio-system"},
        "spec": {
            "hosts": ["netfirst.global"],
            "addresses": ["240.0.7.7"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"name": "http", "number": 9080, "protocol": "HTTP"}],
            "endpoints": [
                {"address": a, "locality": loc, "network": net, "labels": {NETWORK_LABEL: net}}
                for a, net, loc in endpoints
            ],
        },
    }
    failover_priority = [NETWORK_LABEL, REGION_LABEL, ZONE_LABEL]
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "netfirst", "namespace": "istio-system"},
        "spec": {
            "host": "netfirst.global",
            "trafficPolicy": {
                "outlierDetection": {"consecutive5xxErrors": 1, "interval": "5s", "baseEjectionTime": "30s"},
                "loadBalancer": {
                    "localityLbSetting": {"enabled": True, "failoverPriority": failover_priority}
                },
            },
        },
    }
    for obj in (se, dr):
        kube.apply(api, obj)
    client = Locality("us-east-1", "us-east-1a")
    model = [LbEndpoint(Locality.parse(loc), {NETWORK_LABEL: net}) for _, net, loc in endpoints]
    proxy_labels = {**client.labels(), NETWORK_LABEL: "net-a", CLUSTER_LABEL: "mgmt-cluster"}
    running = istio_rules(fleet.istiods["mgmt-cluster"].version())
    assert running.known and running.rules == fleet.assets.release

    def predicted(rules_version: str) -> dict[str, int]:
        prios = istio_priorities(
            client,
            model,
            failover_priority=failover_priority,
            proxy_labels=proxy_labels,
            rules=istio_rules(rules_version),
        )
        return {f"{a}:9080": p for (a, _, _), p in zip(endpoints, prios, strict=True)}

    try:
        with fleet.sidecar(
            "mgmt-cluster", "netfirst", locality=locality_parts(client), network="net-a"
        ) as proxy:
            want = predicted(running.version)
            got = proxy.wait_for_priorities("outbound|9080||netfirst.global", want, timeout=30)
            assert proxy.rejected_updates() == {}
    finally:
        for obj in (se, dr):
            kube.delete(
                api, obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace="istio-system"
            )
    assert got == want
    other = "1.30.3" if running.rules != "1.30" else "1.31.0"
    assert predicted(other) != got  # the rule the other release would apply gives another order
    if running.rules == "1.31":
        # net-b endpoints keep their region order (preferred, not required): 0, 2, 1, 3
        assert [got[f"{a}:9080"] for a, _, _ in endpoints] == [0, 2, 1, 3]


def test_propagation_and_startup_are_reported(fleet: Fleet, tmp_path: Path) -> None:
    """A DestinationRule change reaches the sidecar (bounded wait) -- and the numbers for the docs."""
    root = write_fleet_policies(tmp_path / "policies", CLUSTERS, {"timing": ""})
    apply(fleet, root)
    with fleet.sidecar("mgmt-cluster", "timing", locality=("us-east-1", "us-east-1a")) as proxy:
        proxy.wait_for_hosts("outbound|9080||timing.global")
        text = (root / "timing.yaml").read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 77s")
        (root / "timing.yaml").write_text(text)
        started = time.monotonic()
        apply(fleet, root)
        applied = time.monotonic()
        deadline = applied + 30
        seen = ""
        while time.monotonic() < deadline:
            config = proxy.cluster_config("outbound|9080||timing.global") or {}
            seen = config.get("outlier_detection", {}).get("base_ejection_time", "")
            if seen == "77s":
                break
            time.sleep(0.02)
        propagated = time.monotonic()
        assert seen == "77s"
    print(
        f"\nistiod startup: {', '.join(f'{c} {i.startup_seconds:.1f}s' for c, i in fleet.istiods.items())}; "
        f"RSS {', '.join(f'{i.rss_bytes() >> 20} MiB' for i in fleet.istiods.values())}; "
        f"reconcile pass {applied - started:.2f}s, then DR change in Envoy after {propagated - applied:.2f}s"
    )


# --------------------------------------------------------------------------------------------- status

SUBSET_SHIFT = """\
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {{name: reviews-to-subset, namespace: bookinfo}}
spec:
  destinationSelector:
    - kubeServiceRefs:
        services: [{{clusterName: mgmt-cluster, name: reviews, namespace: bookinfo}}]
  policy:
    trafficShift:
      destinations:
        - kubeService: {{name: reviews, namespace: bookinfo, clusterName: mgmt-cluster, subset: {{version: {version}}}}}
"""


def reconcile_cli(bare: Path, fleet: Fleet, cache: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        [
            "reconcile", "--repo", f"file://{bare}", "--cache-dir", str(cache),
            "--kubeconfig", str(fleet.clusters.kubeconfig_path), "--lease-cluster", "mgmt-cluster",
            "--allow-mass-prune", "-o", "json",
        ],
        env={"COLUMNS": "200"},
    )  # fmt: skip
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, payload


def analysed(fleet: Fleet, name: str, *, present: bool, timeout: float = 60.0) -> list[str]:
    """Wait (bounded) until istiod's analysis of DestinationRule bookinfo/NAME has (or no longer has)
    messages for the object's current generation."""
    api = fleet.clusters.api_client("mgmt-cluster")
    deadline = time.monotonic() + timeout
    messages: list[str] = []
    while time.monotonic() < deadline:
        obj = kube.get_or_none(api, "networking.istio.io/v1", "DestinationRule", name, namespace="bookinfo")
        messages = [m.format() for m in control_plane_messages(obj or {})]
        if bool(messages) == present:
            return messages
        time.sleep(0.25)
    raise AssertionError(
        f"istiod analysis of DestinationRule bookinfo/{name}: {messages} after {timeout:.0f}s"
    )


def test_istiod_analysis_is_reported_in_the_git_status(fleet: Fleet, tmp_path: Path) -> None:
    """A TrafficPolicy shifting traffic to a subset no pod has: istiod's analyzer flags the
    DestinationRule we wrote (IST0173); the next pass shows it on the policy's status in Git with
    Programmed=False; fixing the policy clears it."""
    bare, work = tmp_path / "policy.git", tmp_path / "work"
    git(tmp_path, "init", "--bare", "-b", "main", str(bare))
    git(tmp_path, "clone", str(bare), str(work))
    for item in EXAMPLE.iterdir():
        if item.name != "reviews-shift-failover.yaml":  # it shifts the same service: one TrafficPolicy here
            shutil.copy(item, work / item.name)
    (work / "reviews-to-subset.yaml").write_text(SUBSET_SHIFT.format(version="v9"))
    git(work, "add", "-A")
    git(work, "commit", "-qm", "shift reviews to v9")
    git(work, "push", "-q", "origin", "HEAD:main")
    cache = tmp_path / "cache"

    code, payload = reconcile_cli(bare, fleet, cache)
    assert code == 0, payload
    messages = analysed(fleet, "reviews", present=True)
    assert any("IST0173" in m and m.startswith("ERROR") for m in messages), messages

    code, payload = reconcile_cli(bare, fleet, cache)  # the next pass reads what istiod said
    assert code == 1, payload  # degraded: a policy FAILED
    assert payload["statusCommit"]
    doc = status_doc(work, "TrafficPolicy", "bookinfo", "reviews-to-subset")["status"]
    assert doc["state"] == "FAILED"
    entry = doc["clusters"]["mgmt-cluster"]
    assert entry["state"] == "FAILED"
    assert [(m["object"], m["code"], m["level"]) for m in entry["controlPlane"]] == [
        ("DestinationRule bookinfo/reviews", "IST0173", "ERROR")
    ]
    programmed = next(c for c in doc["conditions"] if c["type"] == "Programmed")
    assert (
        programmed["status"] == "False"
        and "IST0173 DestinationRuleSubsetNotSelectPods" in programmed["message"]
    )
    vd = status_doc(work, "VirtualDestination", "gloo-mesh", "bookinfo-global")["status"]
    assert vd["state"] == "ACCEPTED"  # the other policies are not blamed

    # Fix the policy: v1 pods exist. Our write bumps the generation, so istiod's old message is stale
    # at once; its re-analysis clears it.
    (work / "reviews-to-subset.yaml").write_text(SUBSET_SHIFT.format(version="v1"))
    git(work, "commit", "-qam", "shift reviews to v1")
    git(work, "push", "-q", "origin", "HEAD:main")
    code, payload = reconcile_cli(bare, fleet, cache)
    assert code == 0, payload
    assert analysed(fleet, "reviews", present=False) == []
    doc = status_doc(work, "TrafficPolicy", "bookinfo", "reviews-to-subset")["status"]
    assert doc["state"] == "ACCEPTED" and "controlPlane" not in doc["clusters"]["mgmt-cluster"]
