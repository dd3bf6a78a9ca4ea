"""Status reports on disk: ``<status_path>/<Kind>/<namespace>/<name>.yaml`` plus a README table.

Each path segment is the percent-encoded name, or — only when that would not fit in a file name — a
readable prefix plus a hash; such a report is identified by its content when read back.

Files are written only when their bytes change and reports of deleted policies are removed, so the
status directory always mirrors the repository and a run that changed nothing leaves the worktree
clean (no commit). Reading is forgiving: the status directory sits in a repository people edit, and
a broken or foreign file there must never stop a reconcile — it is ignored (and later replaced).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from reconciler.findings import ObjectKey
from reconciler.repo_config import repo_subdir
from reconciler.status.build import StatusDoc, status_summary
from reconciler.yamlio import load, to_yaml

HEADER = "# Written by mesh-reconciler after each run; edits are overwritten. See README.md here.\n"
README = "README.md"
MAX_STATUS_FILE_BYTES = 1024 * 1024
"""Larger files in the status directory are not ours: skip them rather than parse them."""


def _status_root(root: Path, status_path: str) -> Path:
    """The status directory; refuses paths that would write outside ``root`` (``../``, absolute)."""
    try:
        rel = PurePosixPath(repo_subdir(status_path))
    except ValueError as exc:
        raise ValueError(f"status path {exc}") from None
    status_root = root.joinpath(*rel.parts)
    try:
        status_root.resolve().relative_to(root.resolve())
    except ValueError:
        raise ValueError(f"status path {status_path!r} leads outside the repository (symlink?)") from None
    return status_root


MAX_SEGMENT_BYTES = 250
"""Longest path segment written as is: with ``.yaml`` it fills the 255-byte file-name limit of
ext4, XFS, btrfs, APFS and NTFS. Every name that could be written before keeps its path exactly."""

HASHED_PREFIX_BYTES = 180
"""Readable prefix kept from a segment that is too long; a hash of the whole value follows it."""

HASH_MARK = "+"
"""Separates the prefix from the hash. ``quote(..., safe="")`` always escapes ``+``, so it appears
in no plain segment: a file name containing it is certainly a hashed one."""


def _quote(value: str) -> str:
    # surrogatepass: a name read from a broken file may hold a lone surrogate ("\ud800" escape);
    # it must still get a path (strict UTF-8 would raise and stop the whole status write).
    return urllib.parse.quote(value, safe="", errors="surrogatepass")


def _segment(value: str) -> str:
    """A name as one safe path segment (policy names from broken files may hold ``/`` or ``..``).

    Percent-encoded, so the path reads back to the name; when that is longer than
    :data:`MAX_SEGMENT_BYTES` (a legal 253-character name, or a non-ASCII name, which encoding
    triples), a readable prefix plus a hash of the whole value, so distinct names stay distinct.
    """
    encoded = _quote(value)
    if not encoded:
        return "%00"
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) <= MAX_SEGMENT_BYTES:
        return encoded
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return _truncate_encoded(encoded, HASHED_PREFIX_BYTES) + HASH_MARK + digest


def _truncate_encoded(encoded: str, limit: int) -> str:
    """At most ``limit`` characters of a percent-encoded string, never cutting an ``%XX`` escape."""
    cut = encoded[:limit]
    tail = cut.rfind("%")
    if tail != -1 and tail > len(cut) - 3:
        cut = cut[:tail]
    return cut


def _is_hashed(segment: str) -> bool:
    return HASH_MARK in segment


def _unsegment(value: str) -> str:
    if value == "%00":
        return ""
    try:
        return urllib.parse.unquote(value, errors="surrogatepass")
    except UnicodeDecodeError:  # not UTF-8 once decoded: not a file we wrote; read it leniently
        return urllib.parse.unquote(value)


def status_file(key: ObjectKey) -> str:
    """Path of a policy's report relative to the status directory."""
    return f"{_segment(key.kind)}/{_segment(key.namespace)}/{_segment(key.name)}.yaml"


def _key_of(path: Path, status_root: Path, data: dict[str, Any]) -> ObjectKey | None:
    """Which policy a report file belongs to; None when the file is not one of ours.

    A plain path reads back to the identity exactly (as it always has). A hashed path cannot be
    reversed, so the identity comes from the report itself (``kind`` and ``metadata``, which every
    report carries) and counts only if it leads back to this very path.
    """
    segments = [path.parent.parent.name, path.parent.name, path.name.rsplit(".", 1)[0]]
    if not any(_is_hashed(s) for s in segments):
        return ObjectKey(*(_unsegment(s) for s in segments))
    meta = data.get("metadata")
    kind = data.get("kind")
    if not isinstance(kind, str) or not isinstance(meta, dict):
        return None
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    key = ObjectKey(kind, namespace, name)
    if path.relative_to(status_root).as_posix() != status_file(key):
        return None
    return key


def render_doc(doc: StatusDoc) -> str:
    return HEADER + to_yaml(doc)


def _report_files(status_root: Path) -> list[Path]:
    """Existing ``Kind/namespace/name.yaml`` files (the only files we own besides README.md)."""
    if not status_root.is_dir():
        return []
    out = []
    for path in status_root.glob("*/*/*"):
        if path.suffix in (".yaml", ".yml") and path.is_file() and not path.name.startswith("."):
            out.append(path)
    return sorted(out)


def read_status_dir(root: Path, status_path: str) -> dict[ObjectKey, StatusDoc]:
    """Reports written by earlier runs, keyed by identity; unreadable or foreign files are skipped."""
    status_root = _status_root(root, status_path)
    out: dict[ObjectKey, StatusDoc] = {}
    for path in _report_files(status_root):
        try:
            if path.is_symlink() or path.stat().st_size > MAX_STATUS_FILE_BYTES:
                continue
            data = load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("status"), dict):
            continue
        key = _key_of(path, status_root, data)
        if key is not None:
            out[key] = data
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme(docs: Mapping[ObjectKey, StatusDoc], commit: str) -> str:
    """The summary table: one row per policy, one column per cluster (deterministic, no timestamps)."""
    accepted, invalid, failed, pending = status_summary(docs)
    clusters = sorted(
        {str(c) for doc in docs.values() for c in ((doc.get("status") or {}).get("clusters") or {})}
    )
    lines = [
        "# Policy status",
        "",
        "Written by mesh-reconciler after each run; do not edit (changes are overwritten).",
        "",
        f"- Last reconciled commit: `{commit}`",
        f"- {len(docs)} policies: {accepted} accepted, {invalid} invalid, {failed} failed, {pending} pending",
        "",
    ]
    if not docs:
        lines.append("No policies found.")
        return "\n".join(lines) + "\n"
    lines.append("| Policy | State | " + " | ".join(_cell(c) for c in clusters) + " |")
    lines.append("|---|---|" + "---|" * len(clusters))
    for key in sorted(docs):
        status: dict[str, Any] = docs[key].get("status") or {}
        per_cluster = status.get("clusters") or {}
        cells = [
            str((per_cluster.get(c) or {}).get("state", "-")) if c in per_cluster else "-" for c in clusters
        ]
        link = f"[{_cell(str(key))}]({status_file(key)})"
        lines.append(f"| {link} | {status.get('state', '?')} | " + " | ".join(cells) + " |")
    problems = [
        (key, str(e)) for key in sorted(docs) for e in ((docs[key].get("status") or {}).get("errors") or [])
    ]
    if problems:
        lines += ["", "## Errors", ""]
        lines += [f"- {_cell(str(key))}: {_cell(e)}" for key, e in problems]
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, text: str) -> bool:
    data = text.encode("utf-8")
    try:
        if not path.is_symlink() and path.is_file() and path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a crash never leaves a truncated report that a later run would misread.
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # replaces a symlink itself, never writes through it
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_status_dir(root: Path, status_path: str, docs: Mapping[ObjectKey, StatusDoc], commit: str) -> bool:
    """Make the status directory match ``docs``; True iff any file was written or removed."""
    status_root = _status_root(root, status_path)
    changed = False
    wanted = {status_root / status_file(key): render_doc(doc) for key, doc in docs.items()}
    for path in _report_files(status_root):
        if path not in wanted:
            path.unlink()
            changed = True
            for parent in (path.parent, path.parent.parent):
                try:
                    parent.rmdir()  # only succeeds when empty
                except OSError:
                    break
    for path in sorted(wanted):
        changed |= _write_if_changed(path, wanted[path])
    changed |= _write_if_changed(status_root / README, render_readme(docs, commit))
    return changed
