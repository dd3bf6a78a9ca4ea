"""Localities (``region/zone/subzone``) and the topology labels that carry them.

A value type every stage uses — discovery reads it from node labels, translation writes it into
ServiceEntries, the data-plane model (:mod:`reconciler.dataplane.priorities`) ranks by it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"
LEGACY_REGION_LABEL = "failure-domain.beta.kubernetes.io/region"
LEGACY_ZONE_LABEL = "failure-domain.beta.kubernetes.io/zone"
NETWORK_LABEL = "topology.istio.io/network"
CLUSTER_LABEL = "topology.istio.io/cluster"


@dataclass(frozen=True, order=True)
class Locality:
    region: str = ""
    zone: str = ""
    subzone: str = ""

    @classmethod
    def parse(cls, text: str | None) -> Locality | None:
        """``region[/zone[/subzone]]`` (extra segments are ignored, as istiod does)."""
        if not text:
            return None
        parts = [*text.split("/"), "", ""]
        return cls(parts[0], parts[1], parts[2])

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Locality | None:
        region = labels.get(REGION_LABEL) or labels.get(LEGACY_REGION_LABEL) or ""
        zone = labels.get(ZONE_LABEL) or labels.get(LEGACY_ZONE_LABEL) or ""
        subzone = labels.get(SUBZONE_LABEL) or ""
        if not (region or zone or subzone):
            return None
        return cls(region, zone, subzone)

    def __str__(self) -> str:
        return "/".join(p for p in (self.region, self.zone, self.subzone) if p) or "(none)"

    @functools.cached_property
    def path(self) -> str:
        """The ServiceEntry ``locality`` string (cached: rendering asks for it once per endpoint)."""
        return "/".join(p for p in (self.region, self.zone, self.subzone) if p)

    def labels(self) -> dict[str, str]:
        """Topology labels istiod gives a proxy (or endpoint) in this locality."""
        out = {}
        if self.region:
            out[REGION_LABEL] = self.region
        if self.zone:
            out[ZONE_LABEL] = self.zone
        if self.subzone:
            out[SUBZONE_LABEL] = self.subzone
        return out

    def within(self, scope: Locality) -> bool:
        """True when this locality lies inside ``scope`` (a region, a zone or a subzone)."""
        if self.region != scope.region:
            return False
        if scope.zone and self.zone != scope.zone:
            return False
        return not (scope.subzone and self.subzone != scope.subzone)
