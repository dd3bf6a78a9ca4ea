"""TrafficPolicy -> VirtualService (+ DestinationRule) for each selected service, in its cluster.

One VirtualService per destination service (named after it, in its namespace, ``hosts`` = its FQDN)
carries one HTTP route per distinct request match; policies with the same match share a route.
Each route field (``route``, ``retries``, ``timeout``, ``fault``, ``mirror``, ``headers``,
``corsPolicy``) has one owner: when two policies set the same field of the same route to different
values, the one first in ``namespace/name`` order keeps it and the other is rejected *for that
service* (state INVALID, the message naming both). Never by history, so recreating a cluster from
Git gives the same winner.

``outlierDetection``, ``mtls`` and traffic-shift subsets go to a DestinationRule for the service's
host, under the same ownership rule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from reconciler.clusters.inventory import Inventory, Service
from reconciler.findings import FieldPath, Finding, ObjectKey, warning
from reconciler.policy.durations import format_duration
from reconciler.policy.loader import Loaded
from reconciler.policy.model import (
    CorsPolicy,
    HeaderManipulation,
    HttpRequestMatcher,
    Policy,
    StringMatch,
    TrafficPolicy,
    VirtualDestination,
    effective_outlier_detection,
)
from reconciler.translate.context import TranslationContext
from reconciler.translate.names import sanitize
from reconciler.translate.result import JSON, DesiredObject, Translation
from reconciler.translate.virtual_destination import outlier_detection_spec, select_services

CONFLICT = "Conflict"
"""Finding code of a policy that lost a field to another one (it still applies elsewhere)."""

ROUTE_FIELDS = ("route", "retries", "timeout", "fault", "mirror", "mirrorPercentage", "headers", "corsPolicy")


@dataclass
class _Route:
    match: list[JSON]
    fields: JSON = field(default_factory=dict)
    owners: dict[str, ObjectKey] = field(default_factory=dict)
    sources: set[ObjectKey] = field(default_factory=set)


@dataclass
class _ServiceConfig:
    service: Service
    routes: dict[str, _Route] = field(default_factory=dict)
    dr_fields: JSON = field(default_factory=dict)
    dr_owners: dict[str, ObjectKey] = field(default_factory=dict)
    subsets: dict[str, dict[str, str]] = field(default_factory=dict)
    vs_sources: set[ObjectKey] = field(default_factory=set)
    dr_sources: set[ObjectKey] = field(default_factory=set)


def translate_traffic_policies(
    tps: list[Loaded[TrafficPolicy]],
    vds: dict[ObjectKey, VirtualDestination],
    inventory: Inventory,
    ctx: TranslationContext,
    out: Translation,
) -> None:
    configs: dict[tuple[str, str, str], _ServiceConfig] = {}
    for policy in sorted(tps, key=lambda p: p.key):
        _apply_policy(policy, vds, inventory, configs, ctx, out)
    for key in sorted(configs):
        _emit(configs[key], ctx, out)


def _apply_policy(
    policy: Loaded[TrafficPolicy],
    vds: dict[ObjectKey, VirtualDestination],
    inventory: Inventory,
    configs: dict[tuple[str, str, str], _ServiceConfig],
    ctx: TranslationContext,
    out: Translation,
) -> None:
    outcome = out.outcome(policy.key)
    tp = policy.obj
    spec = tp.spec
    if spec.destination_selector:
        services = select_services(inventory, spec.destination_selector)
    else:
        services = list(inventory.services())  # Gloo Mesh: no selector = every service
    if not services:
        outcome.findings.append(
            policy.error_at(
                ("spec", "destinationSelector"),
                "destinationSelector matches no service in any discovered cluster",
                code="NoDestinations",
            )
        )
        outcome.unresolved = "destinationSelector matches no service"
        return
    contributions = []
    for service in services:
        if not _source_cluster_selected(tp, service.cluster):
            continue
        contribution, dr, subsets, problems = _contribution(policy, service, vds, inventory, ctx)
        outcome.findings.extend(problems)
        contributions.append((service, contribution, dr, subsets))
    if outcome.errors:
        return  # an invalid policy contributes nothing anywhere; what it wrote before is held
    match = _matches(tp.spec.http_request_matchers, tp)
    for service, contribution, dr, subsets in contributions:
        config = configs.setdefault(service.key, _ServiceConfig(service))
        conflicts = _merge(policy.key, service, config, match, contribution, dr, subsets)
        if conflicts:
            outcome.findings.extend(
                policy.error_at(("spec", "policy"), msg, code=CONFLICT) for msg in conflicts
            )
            continue
        outcome.clusters.add(service.cluster)
    if not outcome.clusters and not outcome.findings:
        outcome.findings.append(
            warning(
                "sourceSelector clusters exclude every selected service's cluster; nothing is written",
                location=policy.location_of(("spec", "sourceSelector")),
                object=policy.key,
                code="NoTargets",
            )
        )


def _source_cluster_selected(tp: TrafficPolicy, cluster: str) -> bool:
    if not tp.spec.source_selector:
        return True
    return any(
        not sel.kube_workload_matcher.clusters or cluster in sel.kube_workload_matcher.clusters
        for sel in tp.spec.source_selector
    )


def _contribution(
    policy: Loaded[TrafficPolicy],
    service: Service,
    vds: dict[ObjectKey, VirtualDestination],
    inventory: Inventory,
    ctx: TranslationContext,
) -> tuple[JSON, JSON, dict[str, dict[str, str]], list[Finding]]:
    tp = policy.obj
    p: Policy = tp.spec.policy
    fields: JSON = {}
    dr: JSON = {}
    subsets: dict[str, dict[str, str]] = {}
    problems: list[Finding] = []
    domain = ctx.cluster_domain

    def problem(msg: str, path: FieldPath) -> None:
        """``path`` is relative to ``spec.policy``."""
        problems.append(
            policy.error_at(("spec", "policy", *path), f"{service}: {msg}", code="InvalidDestination")
        )

    if p.traffic_shift is not None:
        routes = []
        explicit = [d.weight for d in p.traffic_shift.destinations if d.weight is not None]
        for i, dest in enumerate(p.traffic_shift.destinations):
            weight = dest.weight if dest.weight is not None else (100 // len(p.traffic_shift.destinations))
            if not explicit and i == 0:
                weight += 100 - (100 // len(p.traffic_shift.destinations)) * len(p.traffic_shift.destinations)
            destination: JSON
            if dest.virtual_destination is not None:
                ref = dest.virtual_destination
                key = ObjectKey("VirtualDestination", ref.namespace or tp.namespace, ref.name)
                vd = vds.get(key)
                if vd is None:
                    problem(
                        f"VirtualDestination {key.namespace}/{key.name} is invalid; fix it first",
                        ("trafficShift", "destinations", i),
                    )
                    continue
                if ref.subset:
                    problem(
                        "subsets of a VirtualDestination are not supported",
                        ("trafficShift", "destinations", i),
                    )
                    continue
                destination = {"host": vd.spec.hostname, "port": {"number": vd.spec.port.number}}
            else:
                ks = dest.kube_service
                assert ks is not None
                if ks.cluster_name != service.cluster:
                    problem(
                        f"traffic shift to {ks.namespace}/{ks.name} in another cluster ({ks.cluster_name}) is not "
                        "supported; shift to a VirtualDestination that includes it instead",
                        ("trafficShift", "destinations", i),
                    )
                    continue
                target = _service(inventory, ks.cluster_name, ks.namespace, ks.name)
                if target is None:
                    problem(
                        f"traffic shift target {ks.namespace}/{ks.name} not found in {ks.cluster_name}",
                        ("trafficShift", "destinations", i),
                    )
                    continue
                destination = {"host": target.fqdn(domain)}
                if ks.port is not None:
                    if all(sp.port != ks.port for sp in target.ports):
                        problem(
                            f"port {ks.port} does not exist on {target}", ("trafficShift", "destinations", i)
                        )
                        continue
                    destination["port"] = {"number": ks.port}
                elif len(target.ports) > 1:
                    problem(
                        f"{target} has several ports; set kubeService.port",
                        ("trafficShift", "destinations", i),
                    )
                    continue
                if ks.subset:
                    name = subset_name(ks.subset)
                    destination["subset"] = name
                    if target.key == service.key:
                        subsets[name] = dict(ks.subset)
                    else:
                        problem(
                            "subsets of another service than the selected one are not supported",
                            ("trafficShift", "destinations", i),
                        )
                        continue
            route: JSON = {"destination": destination, "weight": weight}
            if dest.options is not None and dest.options.header_manipulation is not None:
                route["headers"] = _headers(dest.options.header_manipulation)
            routes.append(route)
        routes = [r for r in routes if r["weight"] > 0] or routes
        if len(routes) == 1:
            routes[0]["weight"] = 100
        fields["route"] = routes
    if p.retries is not None:
        retries: JSON = {"attempts": p.retries.attempts}
        if p.retries.per_try_timeout is not None:
            retries["perTryTimeout"] = format_duration(p.retries.per_try_timeout)
        fields["retries"] = retries
    if p.request_timeout is not None:
        fields["timeout"] = format_duration(p.request_timeout)
    if p.fault_injection is not None:
        fi = p.fault_injection
        percentage = {"value": _percent(fi.percentage if fi.percentage is not None else 100)}
        if fi.fixed_delay is not None:
            fields["fault"] = {
                "delay": {"fixedDelay": format_duration(fi.fixed_delay), "percentage": percentage}
            }
        elif fi.abort is not None:
            fields["fault"] = {"abort": {"httpStatus": fi.abort.http_status, "percentage": percentage}}
    if p.mirror is not None:
        m = p.mirror
        if m.kube_service.cluster_name != service.cluster:
            problem("mirroring to a service in another cluster is not supported", ("mirror",))
        else:
            target = _service(
                inventory, m.kube_service.cluster_name, m.kube_service.namespace, m.kube_service.name
            )
            if target is None:
                problem(
                    f"mirror target {m.kube_service.namespace}/{m.kube_service.name} not found", ("mirror",)
                )
            else:
                mirror: JSON = {"host": target.fqdn(domain)}
                if m.port is not None:
                    if all(sp.port != m.port for sp in target.ports):
                        problem(f"port {m.port} does not exist on mirror target {target}", ("mirror", "port"))
                    mirror["port"] = {"number": m.port}
                elif len(target.ports) > 1:
                    problem(f"mirror target {target} has several ports; set mirror.port", ("mirror",))
                fields["mirror"] = mirror
                if m.percentage is not None:
                    fields["mirrorPercentage"] = {"value": _percent(m.percentage)}
    if p.header_manipulation is not None:
        fields["headers"] = _headers(p.header_manipulation)
    if p.cors_policy is not None:
        fields["corsPolicy"] = _cors(p.cors_policy)
    if p.outlier_detection is not None:
        if tp.spec.source_selector:
            problem(
                "outlierDetection applies to every client; it needs an empty sourceSelector",
                ("outlierDetection",),
            )
        dr["outlierDetection"] = outlier_detection_spec(effective_outlier_detection(p.outlier_detection))
    if p.mtls is not None:
        dr["tls"] = {"mode": p.mtls.istio.tls_mode}
    return fields, dr, subsets, problems


def _service(inventory: Inventory, cluster: str, namespace: str, name: str) -> Service | None:
    return inventory.service(cluster, namespace, name)


def subset_name(labels: dict[str, str]) -> str:
    """Gloo Mesh's subset naming: sorted ``key-value`` pairs joined by ``-``, sanitized."""
    return sanitize("-".join(f"{k}-{v}" for k, v in sorted(labels.items())))


def _headers(h: HeaderManipulation) -> JSON:
    out: JSON = {}
    request: JSON = {}
    if h.append_request_headers:
        request["add"] = dict(sorted(h.append_request_headers.items()))
    if h.remove_request_headers:
        request["remove"] = list(h.remove_request_headers)
    response: JSON = {}
    if h.append_response_headers:
        response["add"] = dict(sorted(h.append_response_headers.items()))
    if h.remove_response_headers:
        response["remove"] = list(h.remove_response_headers)
    if request:
        out["request"] = request
    if response:
        out["response"] = response
    return out


def string_match(m: StringMatch) -> dict[str, str]:
    """Istio StringMatch (exact | prefix | regex); suffix and ignoreCase become an RE2 regex."""
    if m.ignore_case or m.suffix is not None:
        if m.regex is not None:
            pattern = m.regex
        elif m.exact is not None:
            pattern = re.escape(m.exact)
        elif m.prefix is not None:
            pattern = re.escape(m.prefix) + ".*"
        else:
            pattern = ".*" + re.escape(m.suffix or "")
        return {"regex": ("(?i)" if m.ignore_case else "") + pattern}
    if m.exact is not None:
        return {"exact": m.exact}
    if m.prefix is not None:
        return {"prefix": m.prefix}
    return {"regex": m.regex or ""}


def _cors(c: CorsPolicy) -> JSON:
    out: JSON = {}
    if c.allow_origins:
        out["allowOrigins"] = [string_match(o) for o in c.allow_origins]
    if c.allow_methods:
        out["allowMethods"] = list(c.allow_methods)
    if c.allow_headers:
        out["allowHeaders"] = list(c.allow_headers)
    if c.expose_headers:
        out["exposeHeaders"] = list(c.expose_headers)
    if c.max_age is not None:
        out["maxAge"] = format_duration(c.max_age)
    if c.allow_credentials is not None:
        out["allowCredentials"] = c.allow_credentials
    return out


def _http_match(m: HttpRequestMatcher) -> JSON:
    out: JSON = {}
    if m.uri is not None:
        out["uri"] = string_match(m.uri)
    elif m.prefix is not None:
        out["uri"] = {"prefix": m.prefix}
    elif m.exact is not None:
        out["uri"] = {"exact": m.exact}
    elif m.regex is not None:
        out["uri"] = {"regex": m.regex}
    headers: JSON = {}
    without: JSON = {}
    for h in m.headers:
        # No value: a presence match (Gloo Mesh produced exact "" here).
        value = {"regex": ".*"} if h.value is None else {"regex": h.value} if h.regex else {"exact": h.value}
        (without if h.invert_match else headers)[h.name] = value
    if headers:
        out["headers"] = headers
    if without:
        out["withoutHeaders"] = without
    if m.query_parameters:
        out["queryParams"] = {
            q.name: ({"regex": q.value} if q.regex else {"exact": q.value}) for q in m.query_parameters
        }
    if m.method:
        out["method"] = {"exact": m.method.upper()}
    return out


def _matches(matchers: list[HttpRequestMatcher], tp: TrafficPolicy) -> list[JSON]:
    """Cartesian product of source selectors (namespaces/labels) and HTTP matchers."""
    http = [_http_match(m) for m in matchers] or [{}]
    sources: list[JSON] = []
    for sel in tp.spec.source_selector:
        wm = sel.kube_workload_matcher
        base: JSON = {}
        if wm.labels:
            base["sourceLabels"] = dict(sorted(wm.labels.items()))
        if wm.namespaces:
            sources.extend({**base, "sourceNamespace": ns} for ns in sorted(wm.namespaces))
        else:
            sources.append(base)
    sources = sources or [{}]
    out = [{**s, **h} for s in sources for h in http]
    return [] if out == [{}] else out


def _merge(
    owner: ObjectKey,
    service: Service,
    config: _ServiceConfig,
    match: list[JSON],
    fields: JSON,
    dr: JSON,
    subsets: dict[str, dict[str, str]],
) -> list[str]:
    """Merge one policy's fields for one service; all-or-nothing. Returns conflict messages."""
    match_key = json.dumps(match, sort_keys=True)
    route = config.routes.get(match_key)
    conflicts = []
    for name, value in fields.items():
        if route is not None and name in route.fields and route.fields[name] != value:
            other = route.owners[name]
            conflicts.append(
                f"VirtualService {service.namespace}/{service.name} in {service.cluster}: field {name} of the route "
                f"{_describe_match(match)} is already set by TrafficPolicy {other.namespace}/{other.name} "
                f"(first in namespace/name order wins)"
            )
    for name, value in dr.items():
        if name in config.dr_fields and config.dr_fields[name] != value:
            other = config.dr_owners[name]
            conflicts.append(
                f"DestinationRule {service.namespace}/{service.name} in {service.cluster}: field {name} is already set "
                f"by TrafficPolicy {other.namespace}/{other.name} (first in namespace/name order wins)"
            )
    for name, labels in subsets.items():
        if name in config.subsets and config.subsets[name] != labels:
            conflicts.append(f"subset {name} is defined twice with different labels")
    if conflicts:
        return conflicts
    if fields:
        if route is None:
            route = config.routes[match_key] = _Route(match)
        for name, value in fields.items():
            route.fields[name] = value
            route.owners.setdefault(name, owner)
        route.sources.add(owner)
        config.vs_sources.add(owner)
    for name, value in dr.items():
        config.dr_fields[name] = value
        config.dr_owners.setdefault(name, owner)
    config.subsets.update(subsets)
    if dr or subsets:
        config.dr_sources.add(owner)
    return []


def _describe_match(match: list[JSON]) -> str:
    return "(all requests)" if not match else json.dumps(match, sort_keys=True, separators=(",", ":"))


def _route_order(route: _Route) -> tuple[int | str, ...]:
    """More specific matches first; the catch-all route last (first match wins in Envoy)."""
    if not route.match:
        return (1,)
    first = route.match[0]
    uri = first.get("uri", {})
    kind = 0 if "exact" in uri else 1 if "regex" in uri else 2 if "prefix" in uri else 3
    length = -len(next(iter(uri.values()), "")) if uri else 0
    return (
        0,
        kind,
        length,
        -len(first.get("headers", {})),
        -len(first.get("queryParams", {})),
        json.dumps(route.match, sort_keys=True),
    )


def _emit(config: _ServiceConfig, ctx: TranslationContext, out: Translation) -> None:
    svc = config.service
    host = svc.fqdn(ctx.cluster_domain)
    if config.routes:
        http = []
        for route in sorted(config.routes.values(), key=_route_order):
            entry: JSON = {}
            if route.match:
                entry["match"] = route.match
            entry["route"] = route.fields.get("route") or [{"destination": {"host": host}}]
            for name in ROUTE_FIELDS[1:]:
                if name in route.fields:
                    entry[name] = route.fields[name]
            http.append(entry)
        sources = sorted(config.vs_sources)
        name = ctx.names.allocate(
            svc.cluster, "VirtualService", svc.namespace, svc.name, "|".join(k.ref for k in sources)
        )
        body: JSON = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": ctx.metadata(name, svc.namespace, sources),
            "spec": {"hosts": [host], "http": http},
        }
        obj = DesiredObject(svc.cluster, body, tuple(sources), frozenset({svc.cluster}))
        out.add(obj)
        for key in sources:
            out.outcome(key).objects.append(obj.ref)
    if config.dr_fields or config.subsets:
        sources = sorted(config.dr_sources)
        name = ctx.names.allocate(
            svc.cluster, "DestinationRule", svc.namespace, svc.name, "|".join(k.ref for k in sources)
        )
        spec: JSON = {"host": host}
        if config.dr_fields:
            spec["trafficPolicy"] = {k: config.dr_fields[k] for k in sorted(config.dr_fields)}
        if config.subsets:
            spec["subsets"] = [{"name": n, "labels": config.subsets[n]} for n in sorted(config.subsets)]
        body = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": ctx.metadata(name, svc.namespace, sources),
            "spec": spec,
        }
        obj = DesiredObject(svc.cluster, body, tuple(sources), frozenset({svc.cluster}))
        out.add(obj)
        for key in sources:
            out.outcome(key).objects.append(obj.ref)


def _percent(value: float) -> float:
    """A percentage as the API server returns it: a whole number as an integer (JSON has one number
    type, and the server writes ``100``, never ``100.0``). Written as the float, it would compare
    equal but print as ``100.0`` against the live ``100`` in every diff of the object."""
    return int(value) if float(value).is_integer() else value
