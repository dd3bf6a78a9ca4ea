"""An Envoy v3 bootstrap for a client sidecar, built from what we render (pure; no I/O).

Input is an :class:`~reconciler.dataplane.explain.Explanation`: the rendered ServiceEntry and DestinationRule of
the client's cluster plus the priority of every endpoint, computed with istiod's rules
(:mod:`reconciler.dataplane.priorities`). Output is the bootstrap (a dict, ready for ``yaml``/``json``) of an Envoy
standing in for the client's sidecar:

* ``node.locality`` is the client's locality;
* admin on ``127.0.0.1:<admin_port>``; one HTTP listener on ``127.0.0.1:<listener_port>`` routing every
  request to the cluster ``outbound|<port>||<hostname>`` (istiod's name for it);
* that cluster carries what istiod would send for it (the EDS endpoints inlined):

  - endpoints grouped by (priority, locality), in the order ``explain`` prints them; a group's
    ``load_balancing_weight`` is the sum of its endpoints' weights, as istiod computes it;
  - ``outlier_detection`` mapped from the DestinationRule the way istiod's ``applyOutlierDetection``
    maps it (see :func:`outlier_detection`), and ``common_lb_config.healthy_panic_threshold`` =
    ``minHealthPercent`` (0 unless set: panic routing off);
  - ``common_lb_config.locality_weighted_lb_config`` when ``failover`` or ``failoverPriority`` is in
    effect (or ``distribute`` is set), as istiod sets it;
  - the load-balancing policy istiod picks (``LEAST_REQUEST`` unless ``simple`` says otherwise).

Addresses and ports are exactly the rendered ServiceEntry's; nothing is rewritten. What a real Istio
sidecar has and this bootstrap has not is listed in :data:`DEVIATIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.dataplane import DEFAULT_ADMIN_PORT, DEFAULT_LISTENER_PORT
from reconciler.dataplane.explain import ExplainedEndpoint, Explanation
from reconciler.locality import Locality
from reconciler.policy.durations import format_duration, parse_duration

CONNECT_TIMEOUT = "10s"
"""MeshConfig ``connectTimeout`` default."""

DEVIATIONS: tuple[str, ...] = (
    "endpoints are inlined in a STATIC (or STRICT_DNS) cluster instead of being sent over EDS; "
    "priorities, localities and weights are the ones istiod would send",
    "plaintext HTTP upstream: the DestinationRule's tls (ISTIO_MUTUAL) needs Istio certificates and is "
    "not configured; a remote endpoint (the east-west gateway address) is dialled directly",
    "no route retry policy: istiod's default (2 retries on connect-failure, refused-stream, ...) "
    "would hide connection failures from the client; upstream 503 answers are not retried by it anyway",
    "one listener on 127.0.0.1 instead of the iptables-captured 15001 virtual listener",
)

_LB_POLICIES = {
    "ROUND_ROBIN": "ROUND_ROBIN",
    "RANDOM": "RANDOM",
    "LEAST_REQUEST": "LEAST_REQUEST",
    "LEAST_CONN": "LEAST_REQUEST",
}


def cluster_name(explanation: Explanation) -> str:
    """istiod's outbound cluster name for the VirtualDestination's hostname and port."""
    return f"outbound|{service_port(explanation)}||{explanation.hostname}"


def service_port(explanation: Explanation) -> int:
    ports = explanation.service_entry.body["spec"].get("ports") or []
    if not ports:
        raise ValueError(f"ServiceEntry {explanation.service_entry.name} has no ports")
    return int(ports[0]["number"])


def envoy_duration(value: str) -> str:
    """A DestinationRule duration (``5s``, ``1m30s``, ``250ms``) as protobuf-JSON seconds (``90s``)."""
    return format_duration(parse_duration(value))


def envoy_locality(locality: Locality | None) -> dict[str, str]:
    if locality is None:
        return {}
    out = {"region": locality.region, "zone": locality.zone, "sub_zone": locality.subzone}
    return {k: v for k, v in out.items() if v}


def outlier_detection(od: Mapping[str, Any]) -> dict[str, Any]:
    """Envoy ``outlier_detection`` for a DestinationRule ``outlierDetection``, as istiod maps it.

    * success-rate ejection is always off (``enforcing_success_rate: 0``);
    * ``consecutive5xxErrors: v`` -> ``consecutive_5xx: v`` and ``enforcing_consecutive_5xx`` 100 (0
      when ``v`` is 0); unset -> nothing written (Envoy's defaults: 5, enforced);
    * ``consecutiveGatewayErrors`` likewise -> ``consecutive_gateway_failure`` (+ enforcing);
    * ``interval`` and ``baseEjectionTime`` copied;
    * ``maxEjectionPercent`` copied **only when > 0** (otherwise Envoy's 10% applies);
    * ``splitExternalLocalOriginErrors`` (+ ``consecutiveLocalOriginFailures``) copied.
    """
    out: dict[str, Any] = {}
    for field, count, enforcing in (
        ("consecutive5xxErrors", "consecutive_5xx", "enforcing_consecutive_5xx"),
        ("consecutiveGatewayErrors", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure"),
    ):
        if od.get(field) is not None:
            value = int(od[field])
            out[count] = value
            out[enforcing] = 100 if value > 0 else 0
    if od.get("interval") is not None:
        out["interval"] = envoy_duration(str(od["interval"]))
    if od.get("baseEjectionTime") is not None:
        out["base_ejection_time"] = envoy_duration(str(od["baseEjectionTime"]))
    max_percent = int(od.get("maxEjectionPercent") or 0)
    if max_percent > 0:
        out["max_ejection_percent"] = max_percent
    if od.get("splitExternalLocalOriginErrors"):
        out["split_external_local_origin_errors"] = True
        local = int(od.get("consecutiveLocalOriginFailures") or 0)
        if local > 0:
            out["consecutive_local_origin_failure"] = local
            out["enforcing_consecutive_local_origin_failure"] = 100
        out["enforcing_local_origin_success_rate"] = 0
    out["enforcing_success_rate"] = 0
    return out


def lb_policy(load_balancer: Mapping[str, Any]) -> str:
    """istiod's ``applyLoadBalancer``: ``simple`` if set, else its default ``LEAST_REQUEST``."""
    simple = str(load_balancer.get("simple") or "")
    return _LB_POLICIES.get(simple, "LEAST_REQUEST")


def _failover_in_effect(lb_setting: Mapping[str, Any], has_outlier_detection: bool) -> bool:
    if lb_setting.get("enabled") is False:
        return False
    if lb_setting.get("distribute"):
        return True
    return has_outlier_detection and bool(lb_setting.get("failover") or lb_setting.get("failoverPriority"))


def _group_key(e: ExplainedEndpoint) -> tuple[int, tuple[str, str, str]]:
    loc = e.locality or Locality()
    return e.priority, (loc.region, loc.zone, loc.subzone)


def load_assignment(explanation: Explanation) -> dict[str, Any]:
    """Endpoints grouped by (priority, locality); group weight = sum of its endpoint weights."""
    port = service_port(explanation)
    groups: dict[tuple[int, tuple[str, str, str]], list[ExplainedEndpoint]] = {}
    for e in explanation.endpoints:
        groups.setdefault(_group_key(e), []).append(e)
    endpoints: list[dict[str, Any]] = []
    for (priority, _), members in sorted(groups.items(), key=lambda item: item[0]):
        lb_endpoints = [
            {
                "endpoint": {
                    "address": {"socket_address": {"address": e.address, "port_value": e.port or port}}
                },
                "load_balancing_weight": max(e.weight, 1),
            }
            for e in members
        ]
        group: dict[str, Any] = {}
        locality = envoy_locality(members[0].locality)
        if locality:
            group["locality"] = locality
        group["priority"] = priority
        group["load_balancing_weight"] = sum(ep["load_balancing_weight"] for ep in lb_endpoints)
        group["lb_endpoints"] = lb_endpoints
        endpoints.append(group)
    return {"cluster_name": cluster_name(explanation), "endpoints": endpoints}


def build_cluster(explanation: Explanation, *, update_merge_window: str | None = None) -> dict[str, Any]:
    """The client's outbound cluster for the VirtualDestination's hostname."""
    se_spec = explanation.service_entry.body["spec"]
    policy = explanation.destination_rule.body["spec"].get("trafficPolicy") or {}
    lb = policy.get("loadBalancer") or {}
    lb_setting = lb.get("localityLbSetting") or {}
    od = policy.get("outlierDetection")
    resolution = str(se_spec.get("resolution", "STATIC"))
    cluster: dict[str, Any] = {"name": cluster_name(explanation)}
    if resolution == "DNS":
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_ONLY"
    else:
        cluster["type"] = "STATIC"
    cluster["connect_timeout"] = CONNECT_TIMEOUT
    cluster["lb_policy"] = lb_policy(lb)
    common: dict[str, Any] = {}
    if od is not None:
        cluster["outlier_detection"] = outlier_detection(od)
        # istiod always writes minHealthPercent (default 0), so Envoy's 50% panic threshold never applies
        common["healthy_panic_threshold"] = {"value": float(od.get("minHealthPercent") or 0)}
    if update_merge_window is not None:
        common["update_merge_window"] = envoy_duration(update_merge_window)
    if _failover_in_effect(lb_setting, od is not None):
        common["locality_weighted_lb_config"] = {}
    if common:
        cluster["common_lb_config"] = common
    cluster["load_assignment"] = load_assignment(explanation)
    return cluster


def build_bootstrap(
    explanation: Explanation,
    *,
    listener_port: int = DEFAULT_LISTENER_PORT,
    admin_port: int = DEFAULT_ADMIN_PORT,
    bind_address: str = "127.0.0.1",
    node_id: str | None = None,
    update_merge_window: str | None = None,
    outlier_event_log: str | None = None,
) -> dict[str, Any]:
    """The Envoy bootstrap of a client sidecar in ``explanation.client``'s locality.

    ``update_merge_window``: Envoy's default (1s) is what Istio runs with and is kept unless a value
    is given; ``"0s"`` makes every health change reach the load balancer at once, which only a test
    that measures timings should want. ``outlier_event_log``: file for Envoy's JSON ejection events.
    """
    name = cluster_name(explanation)
    port = service_port(explanation)
    node: dict[str, Any] = {
        "id": node_id or f"client.{explanation.cluster}",
        "cluster": f"client.{explanation.cluster}",
    }
    locality = envoy_locality(explanation.client)
    if locality:
        node["locality"] = locality
    http_connection_manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": f"outbound_{listener_port}",
        "route_config": {
            "name": str(port),
            "virtual_hosts": [
                {
                    "name": f"{explanation.hostname}:{port}",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "0s"}}],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    bootstrap: dict[str, Any] = {
        "node": node,
        "admin": {"address": {"socket_address": {"address": bind_address, "port_value": admin_port}}},
    }
    if outlier_event_log:
        bootstrap["cluster_manager"] = {"outlier_detection": {"event_log_path": outlier_event_log}}
    bootstrap["static_resources"] = {
        "listeners": [
            {
                "name": f"outbound_{listener_port}",
                "address": {"socket_address": {"address": bind_address, "port_value": listener_port}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.http_connection_manager",
                                "typed_config": http_connection_manager,
                            }
                        ]
                    }
                ],
            }
        ],
        "clusters": [build_cluster(explanation, update_merge_window=update_merge_window)],
    }
    return bootstrap


def endpoint_priorities(bootstrap: Mapping[str, Any]) -> dict[str, int]:
    """``address:port`` -> priority for every endpoint of the bootstrap's (first) cluster."""
    clusters: Sequence[Mapping[str, Any]] = bootstrap["static_resources"]["clusters"]
    out: dict[str, int] = {}
    for group in clusters[0]["load_assignment"]["endpoints"]:
        for ep in group["lb_endpoints"]:
            sock = ep["endpoint"]["address"]["socket_address"]
            out[f"{sock['address']}:{sock['port_value']}"] = int(group.get("priority", 0))
    return out


def header_comment(explanation: Explanation) -> str:
    """``#`` lines for the YAML form: what this bootstrap is and how it differs from a real sidecar."""
    vd = explanation.virtual_destination
    lines = [
        f"Envoy bootstrap for a client in {explanation.client.path} (cluster {explanation.cluster}) calling "
        f"{explanation.hostname} (VirtualDestination {vd.namespace}/{vd.name}),",
        f"built from ServiceEntry {explanation.service_entry.namespace}/{explanation.service_entry.name} and "
        f"DestinationRule {explanation.destination_rule.namespace}/{explanation.destination_rule.name} "
        "with the priorities `reconciler explain` shows.",
        "Run: envoy -c FILE --disable-hot-restart --concurrency 1",
        "Differences from an Istio sidecar:",
        *(f"- {d}" for d in DEVIATIONS),
    ]
    return "".join(f"# {line}\n" for line in lines)
