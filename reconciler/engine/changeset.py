"""The change set: what a run found (diff) or did (apply), object by object, cluster by cluster.

It says exactly what was created, configured, unchanged, pruned, held back or failed — the one
record that the diff output, the apply log, the status reports and the metrics are all made from.
"""

from __future__ import annotations

import difflib
import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reconciler.findings import ObjectKey
from reconciler.yamlio import to_yaml


class Action(enum.StrEnum):
    CREATE = "created"
    CONFIGURE = "configured"
    UNCHANGED = "unchanged"
    PRUNE = "pruned"
    HELD = "held"
    """Left exactly as it is live: its source policy is invalid, a cluster it depends on was not
    discovered, or pruning was suspended/refused. Never an error by itself."""
    CONFLICT = "conflict"
    """Not written: the object exists without our ownership markers (see ``--adopt``), or another
    field manager owns fields we set and ``--no-force`` was given."""
    FAILED = "failed"
    """The API server rejected the request (its message is kept)."""

    @property
    def is_difference(self) -> bool:
        return self in (Action.CREATE, Action.CONFIGURE, Action.PRUNE)

    @property
    def is_error(self) -> bool:
        return self in (Action.CONFLICT, Action.FAILED)

    @property
    def symbol(self) -> str:
        return {
            "created": "+",
            "configured": "~",
            "pruned": "-",
            "unchanged": "=",
            "held": "!",
            "conflict": "x",
            "failed": "x",
        }[self.value]


@dataclass
class ObjectChange:
    cluster: str
    kind: str
    namespace: str
    name: str
    action: Action
    sources: tuple[ObjectKey, ...] = ()
    changed_paths: list[str] = field(default_factory=list)
    compared: tuple[dict[str, Any], dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    """(live, desired) in comparable form; :attr:`diff` renders them only when someone reads it."""
    message: str = ""
    previous_managers: list[str] = field(default_factory=list)
    """Field managers whose fields were (or would be) taken over."""
    written: bool = False
    """True once the change was made for real (not a dry run)."""

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def diff(self) -> str:
        """Unified YAML diff live -> desired. Rendered on demand: a first sync creates thousands of
        objects, and dumping each as YAML when only a count is printed was a third of its CPU."""
        if self.compared is None:
            return ""
        before, after = self.compared
        return unified_diff(before, after, self.ref)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cluster": self.cluster,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "action": self.action.value,
            "changedPaths": list(self.changed_paths),
            "sources": [k.ref for k in self.sources],
        }
        if self.message:
            out["message"] = self.message
        if self.previous_managers:
            out["previousManagers"] = list(self.previous_managers)
        return out


@dataclass
class ClusterResult:
    cluster: str
    error: str | None = None
    """Set when the cluster could not be discovered (nothing was compared, written or pruned)."""
    changes: list[ObjectChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.error is None

    def counts(self) -> Counter[str]:
        return Counter(c.action.value for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cluster": self.cluster,
            "reachable": self.reachable,
            "summary": dict(sorted(self.counts().items())),
            "objects": [c.to_dict() for c in self.changes],
        }
        if self.error:
            out["error"] = self.error
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def unified_diff(before: dict[str, Any], after: dict[str, Any], name: str) -> str:
    a = to_yaml(before).splitlines(keepends=True) if before else []
    b = to_yaml(after).splitlines(keepends=True) if after else []
    return "".join(difflib.unified_diff(a, b, f"live/{name}", f"desired/{name}", n=3))


@dataclass
class ChangeSet:
    dry_run: bool
    clusters: dict[str, ClusterResult] = field(default_factory=dict)
    _by_source: dict[ObjectKey, list[ObjectChange]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _indexed: int = field(default=-1, init=False, repr=False, compare=False)

    def all(self) -> list[ObjectChange]:
        return [c for name in sorted(self.clusters) for c in self.clusters[name].changes]

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for r in self.clusters.values():
            total.update(r.counts())
        return total

    @property
    def has_differences(self) -> bool:
        return any(c.action.is_difference for c in self.all())

    @property
    def has_errors(self) -> bool:
        return any(c.action.is_error for c in self.all()) or any(
            not r.reachable for r in self.clusters.values()
        )

    def for_policy(self, key: ObjectKey) -> list[ObjectChange]:
        """The changes a policy contributed to (an index built once: status asks for every policy)."""
        # Stale once a change is added; counting is cheap, copying every change per policy was not.
        size = sum(len(r.changes) for r in self.clusters.values())
        if self._by_source is None or self._indexed != size:
            index: dict[ObjectKey, list[ObjectChange]] = {}
            for change in self.all():
                for source in dict.fromkeys(change.sources):
                    index.setdefault(source, []).append(change)
            self._by_source, self._indexed = index, size
        return list(self._by_source.get(key, ()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "summary": dict(sorted(self.counts().items())),
            "clusters": [self.clusters[name].to_dict() for name in sorted(self.clusters)],
        }
