"""What the translators of one pass share: the cluster domain, the name allocator, object metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from reconciler.clusters.inventory import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCES_ANNOTATION
from reconciler.findings import ObjectKey
from reconciler.translate.failover import Directive, FailoverPlan
from reconciler.translate.names import NameAllocator
from reconciler.translate.result import JSON


@dataclass
class TranslationContext:
    cluster_domain: str = "cluster.local"
    names: NameAllocator = field(default_factory=NameAllocator)
    plans: dict[tuple[str, tuple[Directive, ...]], FailoverPlan] = field(default_factory=dict)
    """Failover plans by (cluster, directives): a cluster's client localities are fixed for the
    pass, and most VirtualDestinations share their directives. One plan (and its
    ``localityLbSetting``) serves them all: computed once, held once (plans are never modified)."""

    endpoints: dict[bytes, JSON] = field(default_factory=dict)
    """ServiceEntry endpoints by content (:meth:`shared_endpoint`)."""

    _annotations: dict[tuple[ObjectKey, ...], str] = field(default_factory=dict)
    """Sources annotation values by sources: one string per policy, not one per object and cluster."""

    def shared_endpoint(self, endpoint: JSON) -> JSON:
        """``endpoint``, or an equal one translated before: one dict for them all.

        A remote cluster's gateway endpoint is the same in every VirtualDestination that fails over
        to it: 10,000 policies over 10 clusters hold 900,000 of them, a few dozen distinct. Only
        whole endpoints are shared, never their parts, so no object holds one dict twice (YAML
        would write that as an alias); like the plans, a translated endpoint is never modified.
        The key is the endpoint's JSON: exact (``1`` is not ``true``), key order included, so a
        shared endpoint is written byte for byte as its own would have been.
        """
        return self.endpoints.setdefault(msgspec.json.encode(endpoint), endpoint)

    def metadata(self, name: str, namespace: str, sources: Iterable[ObjectKey]) -> JSON:
        """``metadata`` of a generated object: our ownership label and sources annotation."""
        key = tuple(sources)
        value = self._annotations.get(key)
        if value is None:
            value = self._annotations[key] = ",".join(sorted(k.ref for k in key))
        return {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {SOURCES_ANNOTATION: value},
        }
