"""A real Envoy presenting itself to istiod as a sidecar of one pod, fed entirely over ADS.

Only CDS (with EDS) is subscribed dynamically: istiod's sidecar *listeners* carry istio-proxy-only
filters (``istio.alpn``, ``istio.stats``) that the upstream Envoy build rejects. To see and use the
routes istiod computes, each name in ``route_names`` gets a static probe listener on 127.0.0.1 whose
HTTP connection manager fetches that RouteConfiguration by RDS over the same ADS stream -- so a
request through it is routed by istiod's VirtualService translation to istiod's clusters.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubeharness.process import ManagedProcess, free_port

from .istiod import Istiod
from .lifecycle import ProcessBacked
from .sds import FakeSds

ENVOY_FLAGS = (
    "--disable-hot-restart",
    "--concurrency",
    "1",
    "-l",
    "warning",
    "--file-flush-interval-msec",
    "100",
)
"""How every test Envoy runs: no shared-memory hot-restart region (no base-id clash); one worker, so
there is one load balancer; log files (the outlier event log) flushed every 100 ms, not every 10 s."""

PROXY_ISTIO_VERSION = "1.31.0"


class SidecarError(RuntimeError):
    """Envoy did not start or did not receive what was waited for (message has its log tail)."""


def _h2_cluster(name: str, address: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }


def _probe_listener(route: str, port: int) -> dict[str, Any]:
    return {
        "name": f"rds-probe-{route}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": f"rds_probe_{route}",
                            "rds": {
                                "route_config_name": route,
                                "config_source": {"ads": {}, "resource_api_version": "V3"},
                            },
                            "http_filters": [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def sidecar_bootstrap(
    *,
    xds_port: int,
    sds_socket: Path,
    admin_port: int,
    cluster_id: str,
    pod: str,
    namespace: str,
    pod_ip: str,
    app: str,
    locality: Sequence[str] = (),
    network: str = "",
    route_ports: Mapping[str, int] | None = None,
    outlier_event_log: Path | None = None,
) -> dict[str, Any]:
    """The bootstrap istio-agent would write for a pod, reduced to what an upstream Envoy can load.

    The node id and metadata are what istiod keys a proxy on: ``sidecar~IP~POD.NS~NS.svc.cluster.local``
    plus CLUSTER_ID/NETWORK/LABELS. ``locality`` (region, zone[, subzone]) is optional: without it
    istiod looks the pod up by IP and takes the locality from its Node, as for a real sidecar.
    """
    node: dict[str, Any] = {
        "id": f"sidecar~{pod_ip}~{pod}.{namespace}~{namespace}.svc.cluster.local",
        "cluster": f"{pod}.{namespace}",
        "metadata": {
            "ISTIO_VERSION": PROXY_ISTIO_VERSION,
            "CLUSTER_ID": cluster_id,
            "NAMESPACE": namespace,
            "NAME": pod,
            "SERVICE_ACCOUNT": "default",
            "MESH_ID": "cluster.local",
            "NETWORK": network,
            "WORKLOAD_NAME": app,
            "OWNER": f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{app}",
            "INTERCEPTION_MODE": "REDIRECT",
            "INSTANCE_IPS": pod_ip,
            "LABELS": {"app": app, "topology.istio.io/cluster": cluster_id},
        },
    }
    if locality:
        node["locality"] = dict(zip(("region", "zone", "sub_zone"), locality, strict=False))
    bootstrap: dict[str, Any] = {
        "node": node,
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        },
        "static_resources": {
            "listeners": [_probe_listener(route, port) for route, port in (route_ports or {}).items()],
            "clusters": [
                _h2_cluster("xds-grpc", {"socket_address": {"address": "127.0.0.1", "port_value": xds_port}}),
                # istiod points every ISTIO_MUTUAL transport socket at SDS through this cluster name.
                _h2_cluster("sds-grpc", {"pipe": {"path": str(sds_socket)}}),
            ],
        },
    }
    if outlier_event_log is not None:
        bootstrap["cluster_manager"] = {"outlier_detection": {"event_log_path": str(outlier_event_log)}}
    return bootstrap


class Sidecar(ProcessBacked):
    """Envoy as pod ``namespace/pod`` of cluster ``istiod.cluster_id``, configured only by that istiod."""

    def __init__(
        self,
        envoy: Path,
        istiod: Istiod,
        sds: FakeSds,
        workdir: Path,
        *,
        locality: Sequence[str] = (),
        pod: str = "client",
        namespace: str = "default",
        pod_ip: str = "10.0.0.5",
        app: str = "client",
        network: str = "",
        route_names: Sequence[str] = (),
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.admin_port = free_port()
        self.route_ports = {name: free_port() for name in route_names}
        self.outlier_event_log = workdir / "outlier-events.jsonl"
        bootstrap = sidecar_bootstrap(
            xds_port=istiod.xds_port,
            sds_socket=sds.socket,
            admin_port=self.admin_port,
            cluster_id=istiod.cluster_id,
            pod=pod,
            namespace=namespace,
            pod_ip=pod_ip,
            app=app,
            locality=locality,
            network=network,
            route_ports=self.route_ports,
            outlier_event_log=self.outlier_event_log,
        )
        self.bootstrap_path = workdir / "bootstrap.yaml"
        self.bootstrap_path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        self._process = ManagedProcess(
            "envoy-sidecar",
            [str(envoy), "-c", str(self.bootstrap_path), "--use-dynamic-base-id", *ENVOY_FLAGS],
            workdir / "envoy.log",
        )

    # ------------------------------------------------------------------------------ admin API

    def _admin(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def _alive(self) -> None:
        if not self._process.running():
            raise SidecarError(f"Envoy exited:\n{self._process.log_tail()}")

    def clusters(self) -> list[dict[str, Any]]:
        return list(self._admin("/clusters?format=json").get("cluster_statuses", []))

    def hosts(self, cluster: str) -> list[dict[str, Any]]:
        for status in self.clusters():
            if status["name"] == cluster:
                return list(status.get("host_statuses", []))
        return []

    def priorities(self, cluster: str) -> dict[str, int]:
        """``{"ip:port": priority}`` of the hosts Envoy holds for ``cluster`` (empty: none yet)."""
        out: dict[str, int] = {}
        for host in self.hosts(cluster):
            address = host["address"]["socket_address"]
            out[f"{address['address']}:{address['port_value']}"] = int(host.get("priority", 0))
        return out

    def _poll_priorities(
        self, cluster: str, done: Callable[[dict[str, int]], bool], timeout: float
    ) -> tuple[bool, dict[str, int]]:
        """Read ``cluster``'s host priorities until ``done`` says so (bounded); (done?, last read)."""
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            self._alive()
            try:
                last = self.priorities(cluster)
            except (OSError, urllib.error.URLError):
                last = {}
            if done(last):
                return True, last
            time.sleep(0.05)
        return False, last

    def wait_for_hosts(
        self, cluster: str, *, count: int | None = None, timeout: float = 30.0
    ) -> dict[str, int]:
        """Poll (bounded) until ``cluster`` has hosts (``count`` of them, if given)."""
        found, last = self._poll_priorities(
            cluster, lambda got: bool(got) and (count is None or len(got) == count), timeout
        )
        if not found:
            raise SidecarError(f"{cluster}: hosts {last} after {timeout:.0f}s; warming {self.warming()}")
        return last

    def wait_for_priorities(
        self, cluster: str, expected: Mapping[str, int], *, timeout: float = 30.0
    ) -> dict[str, int]:
        """Poll (bounded) until the hosts of ``cluster`` have exactly ``expected``; return the last seen."""
        return self._poll_priorities(cluster, lambda got: got == dict(expected), timeout)[1]

    def cluster_config(self, cluster: str) -> dict[str, Any] | None:
        dump = self._admin("/config_dump?resource=dynamic_active_clusters")
        for entry in dump.get("configs", []):
            if entry.get("cluster", {}).get("name") == cluster:
                return dict(entry["cluster"])
        return None

    def endpoint_groups(self, cluster: str) -> list[dict[str, Any]]:
        """The EDS ``ClusterLoadAssignment`` groups istiod sent for ``cluster``, normalised for comparison:
        ``{"priority", "locality" ("region/zone/subzone"), "weight", "addresses"}`` sorted by priority."""
        dump = self._admin("/config_dump?resource=dynamic_endpoint_configs&include_eds")
        for entry in dump.get("configs", []):
            assignment = entry.get("endpoint_config", {})
            if assignment.get("cluster_name") != cluster:
                continue
            groups = []
            for group in assignment.get("endpoints", []):
                loc = group.get("locality", {})
                addresses = sorted(
                    f"{ep['endpoint']['address']['socket_address']['address']}:"
                    f"{ep['endpoint']['address']['socket_address']['port_value']}"
                    for ep in group.get("lb_endpoints", [])
                )
                groups.append(
                    {
                        "priority": int(group.get("priority", 0)),
                        "locality": "/".join(loc.get(k, "") for k in ("region", "zone", "sub_zone")).rstrip(
                            "/"
                        ),
                        "weight": int(group.get("load_balancing_weight", 0)),
                        "addresses": addresses,
                    }
                )
            return sorted(groups, key=lambda g: (g["priority"], g["locality"], g["addresses"]))
        return []

    def warming(self) -> list[str]:
        try:
            dump = self._admin("/config_dump?resource=dynamic_warming_clusters")
        except (OSError, urllib.error.URLError):
            return []
        return [entry["cluster"]["name"] for entry in dump.get("configs", [])]

    def routes(self, name: str, timeout: float = 30.0) -> dict[str, list[str]]:
        """``{virtual host: [target cluster of each route]}`` of RouteConfiguration ``name``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive()
            try:
                dump = self._admin("/config_dump?resource=dynamic_route_configs")
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
                continue
            for entry in dump.get("configs", []):
                config = entry.get("route_config", {})
                if config.get("name") == name:
                    return {
                        vhost["name"]: [
                            route.get("route", {}).get("cluster", "") for route in vhost["routes"]
                        ]
                        for vhost in config.get("virtual_hosts", [])
                    }
            time.sleep(0.05)
        raise SidecarError(f"route configuration {name} not received after {timeout:.0f}s")

    def stats(self, contains: str = "") -> dict[str, int]:
        """Counters and gauges whose name contains ``contains``."""
        data = self._admin(f"/stats?format=json&filter={contains}")
        return {s["name"]: int(s["value"]) for s in data.get("stats", []) if "value" in s}

    def rejected_updates(self) -> dict[str, int]:
        """Every non-zero ``*.update_rejected`` counter: a NACK of something istiod sent."""
        return {name: value for name, value in self.stats("update_rejected").items() if value}
