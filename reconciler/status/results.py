"""Per-cluster results of a sharded run, kept in Git so that any shard can rebuild the whole status.

With ``--shard I/N`` a process writes only the clusters it owns, but the status reports are
per policy and name every cluster. So each shard also records what it did in each of its clusters —
``<status path>/.clusters/<cluster>.yaml``, the part of the change set the reports are made from
(object, action, message, source policies; the cluster's error) — and the reports and the README are
rebuilt from the union of all clusters' records, inside the status commit's fetch–rebuild–retry
loop. Whichever shard pushes last has every other shard's records (a push that lost the race is
rebuilt on top of the winner's commit), so the final status is the one a single process would have
written for the same change set: :func:`build_status` is given the same input.

A record counts only for the policy commit it was made at: after a policy change, a cluster whose
shard has not reconciled the new commit yet is reported as not part of this run (``PENDING``) until
it has. Records of clusters that left the fleet are removed. An unsharded run writes no records and
removes the directory: the status it writes is byte-for-byte what it always was.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.findings import ObjectKey
from reconciler.status.files import (
    MAX_STATUS_FILE_BYTES,
    _segment,
    _status_root,
    _write_if_changed,
)
from reconciler.yamlio import load, to_yaml

RESULTS_DIR = ".clusters"
"""Inside the status directory; a dot directory, so it is never taken for a ``Kind`` of reports."""

HEADER = (
    "# Written by mesh-reconciler: what the shard owning this cluster did in it, read by every shard\n"
    "# to rebuild the status reports. Edits are overwritten.\n"
)


@dataclass(frozen=True)
class StoredResult:
    """One cluster's record: the policy commit it was made at and what was done there."""

    policy_commit: str
    result: ClusterResult


def result_doc(result: ClusterResult, policy_commit: str) -> dict[str, Any]:
    """The record of one cluster (deterministic: an unchanged pass writes identical bytes)."""
    doc: dict[str, Any] = {"cluster": result.cluster, "policyCommit": policy_commit}
    if result.error is not None:
        doc["error"] = result.error
    objects = []
    for change in result.changes:
        item: dict[str, Any] = {
            "kind": change.kind,
            "namespace": change.namespace,
            "name": change.name,
            "action": change.action.value,
            "sources": [k.ref for k in change.sources],
        }
        if change.message:
            item["message"] = change.message
        objects.append(item)
    doc["objects"] = objects
    return doc


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def result_from_doc(data: Any) -> StoredResult | None:
    """A record read back; None when the document is not one we wrote (never raises)."""
    if not isinstance(data, dict):
        return None
    try:
        cluster = _text(data.get("cluster"))
        commit = _text(data.get("policyCommit"))
        error = data.get("error")
        result = ClusterResult(cluster, error=_text(error) if error is not None else None)
        objects = data.get("objects") or []
        if not isinstance(objects, list):
            return None
        for item in objects:
            if not isinstance(item, dict):
                return None
            sources = item.get("sources") or []
            if not isinstance(sources, list):
                return None
            result.changes.append(
                ObjectChange(
                    cluster,
                    _text(item.get("kind")),
                    _text(item.get("namespace")),
                    _text(item.get("name")),
                    Action(_text(item.get("action"))),
                    tuple(ObjectKey.parse(_text(s)) for s in sources),
                    message=_text(item.get("message", "")),
                )
            )
    except ValueError:  # a wrong type, an unknown action, a source without two slashes
        return None
    return StoredResult(commit, result)


def _results_root(root: Path, status_path: str) -> Path:
    return _status_root(root, status_path) / RESULTS_DIR


def read_cluster_results(root: Path, status_path: str) -> dict[str, StoredResult]:
    """Every cluster's record in the status directory; unreadable or foreign files are skipped."""
    directory = _results_root(root, status_path)
    if not directory.is_dir() or directory.is_symlink():
        return {}
    out: dict[str, StoredResult] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_STATUS_FILE_BYTES:
                continue
            stored = result_from_doc(load(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            continue
        # A file counts only at its own cluster's path (a copied or renamed file is not a record).
        if stored is not None and path.name == f"{_segment(stored.result.cluster)}.yaml":
            out[stored.result.cluster] = stored
    return out


def write_cluster_results(
    root: Path,
    status_path: str,
    results: Mapping[str, ClusterResult],
    policy_commit: str,
    fleet: Collection[str],
) -> bool:
    """Write the records of ``results`` (this shard's clusters) and remove those of clusters no
    longer in ``fleet``; True iff a file was written or removed."""
    directory = _results_root(root, status_path)
    changed = False
    keep = {f"{_segment(c)}.yaml" for c in fleet}
    if directory.is_dir() and not directory.is_symlink():
        for path in sorted(directory.glob("*.yaml")):
            if path.name not in keep:
                path.unlink()
                changed = True
    for name in sorted(results):
        text = HEADER + to_yaml(result_doc(results[name], policy_commit))
        changed |= _write_if_changed(directory / f"{_segment(name)}.yaml", text)
    return changed


def remove_cluster_results(root: Path, status_path: str) -> bool:
    """An unsharded run owns every cluster: drop the records a sharded run left (True iff any)."""
    directory = _results_root(root, status_path)
    if directory.is_symlink():
        directory.unlink()
        return True
    if not directory.exists():
        return False
    shutil.rmtree(directory)
    return True


def merge_results(
    own: ChangeSet,
    owned: Collection[str],
    stored: Mapping[str, StoredResult],
    fleet: Collection[str],
    policy_commit: str,
) -> ChangeSet:
    """The fleet's change set: this shard's results for ``owned`` clusters, every other cluster of
    ``fleet`` from its record when that was made at ``policy_commit`` (otherwise it is left out:
    not reconciled at this commit yet)."""
    merged = ChangeSet(dry_run=own.dry_run)
    for name in sorted(fleet):
        if name in owned:
            if name in own.clusters:
                merged.clusters[name] = own.clusters[name]
        elif name in stored and stored[name].policy_commit == policy_commit:
            merged.clusters[name] = stored[name].result
    return merged
