"""What the translators of one pass share: the cluster domain, the name allocator, object metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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

    gateway_endpoints: dict[tuple[Any, ...], JSON] = field(default_factory=dict)
    """ServiceEntry endpoints through a remote cluster's east-west gateway, by everything they are
    made of: the same in every VirtualDestination that fails over to that cluster, so one dict
    serves them all (10,000 policies over 10 clusters hold 900,000 of them, a few dozen distinct:
    half the memory of such a render). Like the plans, a translated endpoint is never modified
    (the weights of merged endpoints go into a new dict); an object never holds one twice (YAML
    would write that as an alias): equal endpoints of one ServiceEntry are merged."""

    _annotations: dict[tuple[ObjectKey, ...], JSON] = field(default_factory=dict)
    """Sources annotations by sources: one map per policy, not one per object and cluster."""

    _labels: JSON = field(default_factory=lambda: {MANAGED_BY_LABEL: MANAGED_BY_VALUE})
    """Our ownership label: one map for every object (never modified, like everything translated)."""

    def metadata(self, name: str, namespace: str, sources: Iterable[ObjectKey]) -> JSON:
        """``metadata`` of a generated object: our ownership label and sources annotation."""
        key = tuple(sources)
        annotations = self._annotations.get(key)
        if annotations is None:
            value = ",".join(sorted(k.ref for k in key))
            annotations = self._annotations[key] = {SOURCES_ANNOTATION: value}
        return {"name": name, "namespace": namespace, "labels": self._labels, "annotations": annotations}
