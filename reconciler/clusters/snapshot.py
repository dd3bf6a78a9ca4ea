"""Snapshots: the live state of each cluster as ``DIR/<cluster>.yaml`` (a ``kind: List``).

A snapshot is exactly what ``kubectl get nodes,services,endpointslices,deployments,... -A -o yaml``
prints, so a hand-made dump works too. Commands that read clusters accept ``--state DIR`` instead,
which lets CI without cluster credentials diff and render against an exported state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reconciler.clusters.inventory import ClusterState, Inventory, build_cluster_state
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
