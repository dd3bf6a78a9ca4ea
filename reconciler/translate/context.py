"""What the translators of one pass share: the cluster domain, the name allocator, object metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.clusters.inventory import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCES_ANNOTATION
from reconciler.findings import ObjectKey
from reconciler.translate.names import NameAllocator
from reconciler.translate.result import JSON


@dataclass
class TranslationContext:
    cluster_domain: str = "cluster.local"
    names: NameAllocator = field(default_factory=NameAllocator)

    def metadata(self, name: str, namespace: str, sources: Iterable[ObjectKey]) -> JSON:
        """``metadata`` of a generated object: our ownership label and sources annotation."""
        return {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {SOURCES_ANNOTATION: ",".join(sorted(k.ref for k in sources))},
        }
