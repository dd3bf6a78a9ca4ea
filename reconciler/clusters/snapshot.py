"""Snapshots: the live state of each cluster as ``DIR/<cluster>.yaml`` (a ``kind: List``).

A snapshot is exactly what ``kubectl get nodes,services,endpointslices,deployments,... -A -o yaml``
prints, so a hand-made dump works too. Commands that read clusters accept ``--state DIR`` instead,
which lets CI without cluster credentials diff and render against an exported state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reconciler.clusters.inventory import ClusterState, Inventory, build_cluster_state, has_our_label
from reconciler.errors import ReconcilerError
from reconciler.yamlio import SafeLoader, to_yaml


class SnapshotError(ReconcilerError):
    """A snapshot directory or file that cannot be used (the message says which and why)."""


def write_snapshot(directory: Path, raw: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """Write one ``<cluster>.yaml`` per cluster; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for cluster, objects in sorted(raw.items()):
        doc = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": objects}
        path = directory / f"{cluster}.yaml"
        path.write_text(to_yaml(doc), encoding="utf-8")
        written.append(path)
    return written


def read_snapshot(directory: Path, clusters: list[str] | None = None) -> Inventory:
    """Build an inventory from ``DIR/*.yaml`` (or only the named clusters)."""
    if not directory.is_dir():
        raise SnapshotError(
            f"{directory}: snapshot directory not found (create one with `reconciler snapshot -o DIR`)"
        )
    files = {p.stem: p for p in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml"))}
    if clusters:
        missing = [c for c in clusters if c not in files]
        if missing:
            raise SnapshotError(
                f"{directory}: no snapshot for cluster(s) {', '.join(missing)} (have: {', '.join(files) or 'none'})"
            )
        files = {c: files[c] for c in clusters}
    if not files:
        raise SnapshotError(f"{directory}: no <cluster>.yaml files")
    inventory = Inventory()
    for cluster, path in files.items():
        inventory.clusters[cluster] = _read_one(cluster, path)
    return inventory


def _read_one(cluster: str, path: Path) -> ClusterState:
    try:
        docs = [
            d for d in yaml.load_all(path.read_text(encoding="utf-8"), Loader=SafeLoader) if d is not None
        ]
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise SnapshotError(f"{path}: cannot read snapshot: {exc}") from None
    objects: list[dict[str, Any]] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise SnapshotError(f"{path}: expected Kubernetes objects or a List, found {type(doc).__name__}")
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            objects.extend(_with_kind(item, doc) for item in doc["items"] if isinstance(item, dict))
        else:
            objects.append(doc)
    return build_cluster_state(cluster, objects, context=f"snapshot:{path}")


def _with_kind(item: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """Typed lists (``NodeList``) omit ``kind`` on items; recover it from the list kind."""
    if "kind" not in item and str(parent.get("kind", "")).endswith("List") and parent["kind"] != "List":
        return {**item, "kind": parent["kind"][: -len("List")]}
    return item


# --------------------------------------------------------------------------------------------------
# export beside the status reports (opt-in: ``status.snapshot`` / ``--status-snapshot``)

EXPORT_DIR = "snapshot"
"""Subdirectory of the status directory holding the exported live state (``<cluster>.yaml``)."""
MAX_EXPORT_BYTES = 4 * 1024 * 1024
"""Above this total the export is skipped (with a warning) and the previous one removed: a status
commit must stay small, and a stale snapshot would silently mislead reviews."""
NEVER_EXPORTED = frozenset({"Secret"})
"""Discovery never lists these; the export refuses them anyway (a snapshot is committed to Git)."""
_VOLATILE_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")
_STATUS_DROPPED = frozenset({"Node", "Deployment"})
"""Kinds whose ``status`` changes all the time (heartbeats, conditions) and is never read."""


def exportable(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The object as the export keeps it (None: never exported): no Secret, and without the fields
    that change on every read (resourceVersion, timestamps, node heartbeats), so an unchanged fleet
    exports identical bytes and the status commit stays empty.

    Our own Istio objects are left out too: they are what the policies render (``impact`` renders
    both revisions itself), and the pass that writes them lists the state from before its writes,
    so keeping them would cost every applied change a second status commit. A snapshot for
    ``diff --state`` comes from ``reconciler snapshot``, which keeps them."""
    kind = str(obj.get("kind", ""))
    if kind in NEVER_EXPORTED or has_our_label(obj):
        return None
    out = {k: v for k, v in obj.items() if not (k == "status" and kind in _STATUS_DROPPED)}
    meta = dict(obj.get("metadata") or {})
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    if "managedFields" in meta:
        meta["managedFields"] = [
            {k: v for k, v in entry.items() if k != "time"}
            for entry in meta["managedFields"]
            if isinstance(entry, dict)
        ]
    if kind == "Node":  # discovery reads a node's name and labels only
        meta = {k: meta[k] for k in ("name", "labels") if k in meta}
        out = {"apiVersion": obj.get("apiVersion", "v1"), "kind": kind}
    out["metadata"] = meta
    return out


def export_snapshot(
    directory: Path,
    raw: dict[str, list[dict[str, Any]]],
    *,
    keep: frozenset[str] = frozenset(),
    max_bytes: int = MAX_EXPORT_BYTES,
) -> tuple[bool, str]:
    """Make ``directory`` hold the snapshot of ``raw`` (what discovery listed, per cluster).

    Files of clusters in ``keep`` (unreachable in this pass) are left as they are; files of clusters
    no longer in the fleet are removed. Returns (whether any file changed, a warning or ""). Too
    large: nothing is written, the previous snapshot is removed and the warning says why.
    """
    docs: dict[str, str] = {}
    for cluster, objects in sorted(raw.items()):
        items = [o for o in (exportable(obj) for obj in objects) if o is not None]
        items.sort(
            key=lambda o: (
                str(o.get("kind")),
                str(o["metadata"].get("namespace", "")),
                str(o["metadata"].get("name", "")),
            )
        )
        doc = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}
        docs[f"{cluster}.yaml"] = to_yaml(doc)
    size = sum(len(text.encode("utf-8")) for text in docs.values())
    warning = ""
    if size > max_bytes:
        warning = (
            f"live-state snapshot not written: {size:,} bytes is over the {max_bytes:,}-byte limit "
            f"(the previous one in {directory} is removed)"
        )
        docs, keep = {}, frozenset()
    changed = False
    if directory.is_dir() and not directory.is_symlink():
        for path in sorted(directory.glob("*.yaml")):
            if path.name not in docs and path.stem not in keep:
                path.unlink()
                changed = True
    if docs:
        directory.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        path = directory / name
        data = text.encode("utf-8")
        if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
            continue
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        changed = True
    return changed, warning
