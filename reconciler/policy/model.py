"""The policy API: Gloo Mesh manifests, accepted verbatim, as pydantic v2 models.

Three kinds are understood:

* ``VirtualDestination`` (``networking.enterprise.mesh.gloo.solo.io/v1beta1``): a global hostname backed
  by the same service in several clusters, with locality-aware (``localized``) or ordered
  (``static``) failover and outlier detection.
* ``TrafficPolicy`` (``networking.mesh.gloo.solo.io/v1``): request-level policy on selected services,
  notably ``trafficShift`` to a VirtualDestination.
* ``VirtualMesh`` (``networking.mesh.gloo.solo.io/v1``): a group of meshes; it decides which clusters a
  VirtualDestination is exported to.

Every model forbids unknown fields: a typo such as ``outlierDetecton`` must be an error with its path,
never a silently disabled failover. ``status`` in a manifest is ignored (the reconciler owns it).
"""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator
from pydantic.alias_generators import to_camel

from reconciler.policy.durations import Duration

ENTERPRISE_NETWORKING_V1BETA1 = "networking.enterprise.mesh.gloo.solo.io/v1beta1"
NETWORKING_V1 = "networking.mesh.gloo.solo.io/v1"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Strict(BaseModel):
    """Base for every spec model: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=False,
        # Validators are built on first validation, not at import: a pass that reuses its build
        # (reconciler.buildcache) only unpickles models, and start-up is paid by every CronJob run.
        defer_build=True,
    )


def _check_dns_subdomain(value: str, what: str) -> str:
    if len(value) > 253 or not _DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{what} {value!r} must be a lowercase RFC 1123 subdomain "
            "(letters, digits, '-' and '.'; start and end alphanumeric)"
        )
    return value


Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
NonNegativeInt = Annotated[int, Field(ge=0)]


# --------------------------------------------------------------------------------------------------
# metadata


class ObjectMeta(BaseModel):
    """The parts of Kubernetes metadata a policy file may carry.

    Fields the API server populates are accepted (so ``kubectl get -o yaml`` output can be committed
    as is) and ignored; anything else is a typo and rejected.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Server-populated; accepted and ignored.
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    uid: str | None = None
    creation_timestamp: Any = Field(default=None, alias="creationTimestamp")
    managed_fields: Any = Field(default=None, alias="managedFields")
    self_link: str | None = Field(default=None, alias="selfLink")
    finalizers: Any = None
    owner_references: Any = Field(default=None, alias="ownerReferences")
    generate_name: str | None = Field(default=None, alias="generateName")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_dns_subdomain(value, "name")

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if len(value) > 63 or not _DNS1123_LABEL.match(value):
            raise ValueError(f"namespace {value!r} must be a lowercase RFC 1123 label")
        return value


# --------------------------------------------------------------------------------------------------
# shared types


class ObjectRef(Strict):
    name: str
    namespace: str | None = None


class ClusterObjectRef(Strict):
    """A Kubernetes Service in a given cluster; all three fields are required (as in Gloo Mesh)."""

    name: str
    namespace: str
    cluster_name: str


class KubeServiceMatcher(Strict):
    """Match Services by labels (all must match), namespaces and clusters (any listed); omitted = any."""

    labels: dict[str, str] = Field(default_factory=dict)
    namespaces: list[str] = Field(default_factory=list)
    clusters: list[str] = Field(default_factory=list)


class KubeServiceRefs(Strict):
    services: list[ClusterObjectRef] = Field(min_length=1)


class DestinationSelector(Strict):
    """One selector item. Items of a list are OR'ed; within an item, matcher and refs are OR'ed."""

    kube_service_matcher: KubeServiceMatcher | None = None
    kube_service_refs: KubeServiceRefs | None = None

    @model_validator(mode="after")
    def _one_set(self) -> DestinationSelector:
        if self.kube_service_matcher is None and self.kube_service_refs is None:
            raise ValueError("set kubeServiceMatcher or kubeServiceRefs (an empty selector matches nothing)")
        return self


class LocalitySpec(Strict):
    region: str = Field(min_length=1)
    zone: str | None = None
    sub_zone: str | None = None

    @model_validator(mode="after")
    def _nested(self) -> LocalitySpec:
        if self.sub_zone and not self.zone:
            raise ValueError("subZone needs zone")
        for part in (self.region, self.zone, self.sub_zone):
            if part is not None and ("/" in part or "*" in part):
                raise ValueError("region, zone and subZone are plain names (no '/' or '*')")
        return self

    def as_path(self) -> str:
        return "/".join(p for p in (self.region, self.zone, self.sub_zone) if p)


class OutlierDetection(Strict):
    """Passive health checking; omitted fields take :data:`OUTLIER_DEFAULTS`.

    ``consecutiveErrors`` is Gloo Mesh's name for consecutive 5xx errors; it becomes Istio's
    ``consecutive5xxErrors`` (Istio no longer translates its own deprecated ``consecutiveErrors``).
    """

    consecutive_errors: NonNegativeInt | None = None
    consecutive_gateway_errors: NonNegativeInt | None = None
    consecutive_5xx_errors: NonNegativeInt | None = Field(
        default=None,
        validation_alias=AliasChoices("consecutive5XXErrors", "consecutive5xxErrors"),
        serialization_alias="consecutive5XXErrors",
    )
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OutlierDetection:
        if (
            self.consecutive_errors is not None
            and self.consecutive_5xx_errors is not None
            and self.consecutive_errors != self.consecutive_5xx_errors
        ):
            raise ValueError("consecutiveErrors and consecutive5XXErrors mean the same thing; set only one")
        for name in ("interval", "base_ejection_time"):
            value = getattr(self, name)
            if value is not None and value.total_seconds() < 0.001:
                raise ValueError(f"{to_camel(name)} must be at least 1ms")
        return self


class HeaderManipulation(Strict):
    remove_response_headers: list[str] = Field(default_factory=list)
    append_response_headers: dict[str, str] = Field(default_factory=dict)
    remove_request_headers: list[str] = Field(default_factory=list)
    append_request_headers: dict[str, str] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# VirtualDestination


class Protocol(enum.StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    GRPC = "GRPC"
    HTTP2 = "HTTP2"
    MONGO = "MONGO"
    TCP = "TCP"
    TLS = "TLS"


class VirtualDestinationPort(Strict):
    """The port clients call on the global hostname and the port selected on each backing service.

    ``targetName``/``targetNumber`` pick the backing Service port (by name, or by port or targetPort
    number). When both are omitted the backing port is the one numbered like ``number``.
    """

    number: Port
    protocol: Protocol = Protocol.HTTP
    target_name: str | None = None
    target_number: Port | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.upper()
            if upper not in Protocol.__members__:
                raise ValueError(f"protocol must be one of {', '.join(Protocol)} (any case), got {value!r}")
            return upper
        return value

    @model_validator(mode="after")
    def _one_target(self) -> VirtualDestinationPort:
        if self.target_name is not None and self.target_number is not None:
            raise ValueError("set targetName or targetNumber, not both")
        return self


class MeshList(Strict):
    meshes: list[ObjectRef] = Field(min_length=1)


class FailoverDirective(Strict):
    """Clients in ``from`` fail over to ``to`` in order (region, zone or subzone granularity)."""

    from_: LocalitySpec = Field(alias="from")
    to: list[LocalitySpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _not_self(self) -> FailoverDirective:
        for target in self.to:
            if target.as_path() == self.from_.as_path():
                raise ValueError(f"'to' locality {target.as_path()} is the same as 'from'")
        paths = [t.as_path() for t in self.to]
        if len(set(paths)) != len(paths):
            raise ValueError("'to' lists the same locality twice")
        return self


class LocalizedFailover(Strict):
    destination_selectors: list[DestinationSelector] = Field(
        min_length=1, description="Backing services; at least one selector is required."
    )
    failover_directives: list[FailoverDirective] = Field(default_factory=list)
    outlier_detection: OutlierDetection | None = None

    @model_validator(mode="after")
    def _unique_from(self) -> LocalizedFailover:
        seen: set[str] = set()
        for directive in self.failover_directives:
            key = directive.from_.as_path()
            if key in seen:
                raise ValueError(
                    f"two failoverDirectives have the same 'from' ({key}); merge their 'to' lists"
                )
            seen.add(key)
        return self


class StaticDestination(Strict):
    kube_service: ClusterObjectRef


class StaticFailover(Strict):
    """Ordered backing services: the list order is the failover order."""

    destinations: list[StaticDestination] = Field(min_length=1)
    outlier_detection: OutlierDetection | None = None


class VirtualDestinationSpec(Strict):
    hostname: str
    port: VirtualDestinationPort
    virtual_mesh: ObjectRef | None = None
    mesh_list: MeshList | None = None
    localized: LocalizedFailover | None = None
    static: StaticFailover | None = None

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        return _check_dns_subdomain(value, "hostname")

    @model_validator(mode="after")
    def _oneofs(self) -> VirtualDestinationSpec:
        if (self.virtual_mesh is None) == (self.mesh_list is None):
            raise ValueError("set exactly one export scope: virtualMesh or meshList")
        if (self.localized is None) == (self.static is None):
            raise ValueError("set exactly one failover mode: localized or static")
        return self

    @property
    def outlier_detection(self) -> OutlierDetection | None:
        mode = self.localized or self.static
        return mode.outlier_detection if mode is not None else None


# --------------------------------------------------------------------------------------------------
# TrafficPolicy


class KubeWorkloadMatcher(Strict):
    labels: dict[str, str] = Field(default_factory=dict)
    namespaces: list[str] = Field(default_factory=list)
    clusters: list[str] = Field(default_factory=list)


class WorkloadSelector(Strict):
    kube_workload_matcher: KubeWorkloadMatcher


class StringMatch(Strict):
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None
    suffix: str | None = None
    ignore_case: bool = False

    @model_validator(mode="after")
    def _one(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex, self.suffix)) != 1:
            raise ValueError("set exactly one of exact, prefix, regex, suffix")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


class HeaderMatcher(Strict):
    name: str
    value: str | None = None
    regex: bool = False
    invert_match: bool = False


class QueryParameterMatcher(Strict):
    name: str
    value: str
    regex: bool = False


class HttpRequestMatcher(Strict):
    name: str | None = None
    uri: StringMatch | None = None
    prefix: str | None = Field(default=None, deprecated=False)
    exact: str | None = None
    regex: str | None = None
    headers: list[HeaderMatcher] = Field(default_factory=list)
    query_parameters: list[QueryParameterMatcher] = Field(default_factory=list)
    method: str | None = None

    @model_validator(mode="after")
    def _uri(self) -> HttpRequestMatcher:
        legacy = [v for v in (self.prefix, self.exact, self.regex) if v is not None]
        if len(legacy) > 1 or (legacy and self.uri is not None):
            raise ValueError("set at most one of uri, prefix, exact, regex")
        return self


class KubeServiceDestination(Strict):
    name: str
    namespace: str
    cluster_name: str
    subset: dict[str, str] = Field(default_factory=dict)
    port: Port | None = None


class VirtualDestinationTarget(Strict):
    name: str
    namespace: str | None = None
    subset: dict[str, str] = Field(default_factory=dict)


class DestinationOptions(Strict):
    header_manipulation: HeaderManipulation | None = None


class WeightedDestination(Strict):
    kube_service: KubeServiceDestination | None = None
    virtual_destination: VirtualDestinationTarget | None = None
    weight: NonNegativeInt | None = None
    options: DestinationOptions | None = None

    @model_validator(mode="after")
    def _one(self) -> WeightedDestination:
        if (self.kube_service is None) == (self.virtual_destination is None):
            raise ValueError("set exactly one of kubeService or virtualDestination")
        return self


class TrafficShift(Strict):
    destinations: list[WeightedDestination] = Field(min_length=1)


class Retries(Strict):
    attempts: NonNegativeInt
    per_try_timeout: Duration | None = None


class Abort(Strict):
    http_status: Annotated[int, Field(ge=200, le=599)]


class FaultInjection(Strict):
    fixed_delay: Duration | None = None
    abort: Abort | None = None
    percentage: Percent | None = None

    @model_validator(mode="after")
    def _one(self) -> FaultInjection:
        if (self.fixed_delay is None) == (self.abort is None):
            raise ValueError("set exactly one of fixedDelay or abort")
        return self


class Mirror(Strict):
    kube_service: ClusterObjectRef
    percentage: Percent | None = None
    port: Port | None = None


class CorsPolicy(Strict):
    allow_origins: list[StringMatch] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=list)
    allow_headers: list[str] = Field(default_factory=list)
    expose_headers: list[str] = Field(default_factory=list)
    max_age: Duration | None = None
    allow_credentials: bool | None = None


class IstioMtls(Strict):
    tls_mode: Literal["DISABLE", "SIMPLE", "ISTIO_MUTUAL"]


class Mtls(Strict):
    istio: IstioMtls


class Policy(Strict):
    traffic_shift: TrafficShift | None = None
    fault_injection: FaultInjection | None = None
    request_timeout: Duration | None = None
    retries: Retries | None = None
    cors_policy: CorsPolicy | None = None
    mirror: Mirror | None = None
    header_manipulation: HeaderManipulation | None = None
    outlier_detection: OutlierDetection | None = None
    mtls: Mtls | None = None


class TrafficPolicySpec(Strict):
    source_selector: list[WorkloadSelector] = Field(default_factory=list)
    destination_selector: list[DestinationSelector] = Field(default_factory=list)
    http_request_matchers: list[HttpRequestMatcher] = Field(default_factory=list)
    policy: Policy = Field(default_factory=Policy)


# --------------------------------------------------------------------------------------------------
# VirtualMesh


class VirtualMeshSpec(Strict):
    """Meshes grouped together. mTLS and federation settings are accepted and kept verbatim."""

    meshes: list[ObjectRef] = Field(min_length=1)
    mtls_config: dict[str, JsonValue] | None = None
    federation: dict[str, JsonValue] | None = None
    global_access_policy: Literal["MESH_DEFAULT", "ENABLED", "DISABLED"] | None = None


# --------------------------------------------------------------------------------------------------
# top-level objects


class PolicyObject(BaseModel):
    """Common envelope: apiVersion, kind, metadata, spec; ``status`` is accepted and ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, defer_build=True)

    API_VERSIONS: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    status: Any = Field(default=None, exclude=True)

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value not in cls.API_VERSIONS:
            raise ValueError(f"{cls.KIND} is served as {', '.join(cls.API_VERSIONS)}, not {value!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace


class VirtualDestination(PolicyObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (ENTERPRISE_NETWORKING_V1BETA1,)
    KIND: ClassVar[str] = "VirtualDestination"
    kind: Literal["VirtualDestination"]
    spec: VirtualDestinationSpec


class TrafficPolicy(PolicyObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (NETWORKING_V1,)
    KIND: ClassVar[str] = "TrafficPolicy"
    kind: Literal["TrafficPolicy"]
    spec: TrafficPolicySpec


class VirtualMesh(PolicyObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (NETWORKING_V1,)
    KIND: ClassVar[str] = "VirtualMesh"
    kind: Literal["VirtualMesh"]
    spec: VirtualMeshSpec


AnyPolicy = VirtualDestination | TrafficPolicy | VirtualMesh
POLICY_KINDS: dict[str, type[PolicyObject]] = {
    cls.KIND: cls for cls in (VirtualDestination, TrafficPolicy, VirtualMesh)
}


# --------------------------------------------------------------------------------------------------
# outlier detection defaults (the one documented set)


class EffectiveOutlierDetection(BaseModel):
    """Outlier detection with every field resolved.

    Gloo Mesh documented two default sets (TrafficPolicy: 5 errors / 10s / 30s / 100%;
    VirtualDestination: 10 gateway + 10 5xx errors / 5s / 120s). We use one set everywhere, the
    TrafficPolicy one, because it equals Envoy's and Istio's own defaults except for
    ``maxEjectionPercent``, which is 100 so a whole locality can be ejected (with Envoy's 10% a
    service with fewer than ten endpoints never fails over; see solo-io/gloo-mesh#948).
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    consecutive_5xx_errors: int = 5
    consecutive_gateway_errors: int | None = None
    interval: Duration = timedelta(seconds=10)
    base_ejection_time: Duration = timedelta(seconds=30)
    max_ejection_percent: int = 100


OUTLIER_DEFAULTS = EffectiveOutlierDetection()


def effective_outlier_detection(od: OutlierDetection | None) -> EffectiveOutlierDetection:
    """Fill omitted fields from :data:`OUTLIER_DEFAULTS`."""
    if od is None:
        return OUTLIER_DEFAULTS
    errors = od.consecutive_5xx_errors if od.consecutive_5xx_errors is not None else od.consecutive_errors
    return EffectiveOutlierDetection(
        consecutive_5xx_errors=errors if errors is not None else OUTLIER_DEFAULTS.consecutive_5xx_errors,
        consecutive_gateway_errors=od.consecutive_gateway_errors,
        interval=od.interval if od.interval is not None else OUTLIER_DEFAULTS.interval,
        base_ejection_time=(
            od.base_ejection_time
            if od.base_ejection_time is not None
            else OUTLIER_DEFAULTS.base_ejection_time
        ),
        max_ejection_percent=(
            od.max_ejection_percent
            if od.max_ejection_percent is not None
            else OUTLIER_DEFAULTS.max_ejection_percent
        ),
    )
