"""Status reports on disk: ``<status_path>/<Kind>/<namespace>/<name>.yaml`` plus a README table.

Each path segment is the percent-encoded name, or — only when that would not fit in a file name — a
readable prefix plus a hash; such a report is identified by its content when read back.

Files are written only when their bytes change and reports of deleted policies are removed, so the
status directory always mirrors the repository and a run that changed nothing leaves the worktree
clean (no commit). Reading is forgiving: the status directory sits in a repository people edit, and
a broken or foreign file there must never stop a reconcile — it is ignored (and later replaced).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import stat
import tempfile
import urllib.parse
import zlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
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


@functools.lru_cache(maxsize=65536)
def status_file(key: ObjectKey) -> str:
    """Path of a policy's report relative to the status directory (cached: a pass asks for every
    report's path two or three times)."""
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


def _scan_reports(status_root: Path) -> dict[str, tuple[int, int] | None]:
    """Existing ``Kind/namespace/name.yaml`` files (the only files we own besides README.md), by
    path relative to ``status_root``, with the size and mtime of each (None: not a regular file).

    ``os.scandir`` rather than ``Path.glob``: a no-op pass lists ~1,500 reports twice, and the
    directory entries already carry what :class:`RenderMemo` compares.
    """
    out: dict[str, tuple[int, int] | None] = {}
    for kind in _subdirs(status_root):
        for namespace in _subdirs(kind.path):
            try:
                entries = list(os.scandir(namespace.path))
            except OSError:
                continue
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith((".yaml", ".yml")):
                    continue
                try:
                    if not entry.is_file():
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                rel = f"{kind.name}/{namespace.name}/{name}"
                out[rel] = (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None
    return out


def _subdirs(path: Path | str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if _is_dir(e)]
    except OSError:
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _report_files(status_root: Path) -> list[Path]:
    return sorted(status_root / rel for rel in _scan_reports(status_root))


def read_status_dir(
    root: Path,
    status_path: str,
    memo: RenderMemo | None = None,
    only: Collection[ObjectKey] | None = None,
    *,
    carried: bool = False,
) -> dict[ObjectKey, StatusDoc]:
    """Reports written by earlier runs, keyed by identity; unreadable or foreign files are skipped.

    A file ``memo`` knows unchanged since we wrote it is not parsed again: its document is taken
    from the memo (parsing ~1,500 reports was the largest cost of a no-op pass at 1,000 services).
    ``only``: just the reports of these policies (the ones a pass builds again).
    ``carried``: each report only as far as a new one carries it over (:func:`carried_fields`:
    what ``status.build`` reads of a previous report), read from the lines we wrote when the file
    is laid out as we write it — a CronJob's empty cache has no memo, and parsing 1,500 whole
    reports for two numbers each was 0.7 s of its pass.
    """
    status_root = _status_root(root, status_path)
    wanted = {status_file(k) for k in only} if only is not None else None
    out: dict[ObjectKey, StatusDoc] = {}
    for path in _report_files(status_root):
        rel = path.relative_to(status_root).as_posix()
        if wanted is not None and rel not in wanted:
            continue
        known = memo.document(rel, path) if memo else None
        try:
            if known is not None:
                data: Any = carried_fields(known) if carried else known
            elif path.is_symlink() or path.stat().st_size > MAX_STATUS_FILE_BYTES:
                continue
            else:
                text = path.read_text(encoding="utf-8")
                data = (_carried_from_lines(text) if carried else None) or load(text)
                if carried:
                    data = carried_fields(data)
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("status"), dict):
            continue
        key = _key_of(path, status_root, data)
        if key is not None:
            out[key] = data
    return out


def carried_fields(doc: Any) -> Any:
    """What a new report takes from the previous one: its ``apiVersion`` (for a policy that no longer
    loads), identity (``kind``, ``metadata`` name and namespace: a hashed path is read back from
    it), and ``status.observedGeneration`` / ``status.specHash`` (the generation goes up only when
    the spec's hash changed). Anything else of a previous report is never read."""
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), dict):
        return doc
    out: dict[str, Any] = {k: doc[k] for k in ("apiVersion", "kind") if k in doc}
    meta = doc.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = {k: meta[k] for k in ("name", "namespace") if k in meta}
    out["status"] = {k: doc["status"][k] for k in ("observedGeneration", "specHash") if k in doc["status"]}
    return out


_TOP = re.compile(r"^(apiVersion|kind|metadata|status):(?: (.*))?$")
_CHILD = re.compile(r"^  ([A-Za-z][A-Za-z0-9]*):(?: (.*))?$")
_CARRIED = {"metadata": ("name", "namespace"), "status": ("observedGeneration", "specHash")}


def _carried_from_lines(text: str) -> dict[str, Any] | None:
    """:func:`carried_fields` of a report read from its lines, without parsing the whole document —
    or None when the file is not laid out as :func:`render_doc` writes it, and the caller parses it
    whole: our header first; top-level keys only ``apiVersion``, ``kind``, ``metadata``, ``status``,
    once each; the children of the last two at an indent of exactly two, each a plain camelCase
    key or a block sequence's item; no blank line; no value of ours continued on the next line
    (folded or block scalars). Each value is read by the YAML loader in its place (``key: value``),
    so quoting and types mean what they mean in YAML; a value it cannot read means None too. What
    this does not check is YAML in the lines it skips (conditions, per-cluster results): a broken
    one there, which we never write, would be read here and skipped by a whole parse."""
    if not text.startswith(HEADER) or yaml.reader.Reader.NON_PRINTABLE.search(text):
        return None
    out: dict[str, Any] = {}
    section: str | None = None
    children = 0
    continued = ""  # the indent that would continue the value just read (a folded or block scalar)
    try:
        for line in text[len(HEADER) :].splitlines():
            if line.startswith("   "):  # most lines: deeper ones (conditions, clusters), never carried
                if continued or section is None or not children:
                    return None  # a value of ours continued, or a layout we do not write
                continue
            if (continued and line.startswith(continued)) or not line.strip():
                return None
            continued = ""
            top = _TOP.match(line)
            if top:
                if section is not None and not children:
                    return None  # `status:` with nothing under it
                key, value = top.groups()
                if key in out:
                    return None
                if key in _CARRIED:
                    if value is not None:  # `status: {}` and the like: not ours to shortcut
                        return None
                    section, children, out[key] = key, 0, {}
                else:
                    if value is None:
                        return None
                    section, out[key], continued = None, _value(key, value), " "
                continue
            if not line.startswith(" "):
                return None  # another top-level key, a document marker, a comment
            if section is None:
                return None  # under apiVersion or kind: not a scalar as we write it
            child = _CHILD.match(line)
            if child is None:
                if line.startswith("  - ") and children:
                    continue  # an indentless sequence under the last key
                return None
            children += 1
            name, value = child.groups()
            if name in _CARRIED[section]:
                if value is None or name in out[section]:
                    return None
                out[section][name], continued = _value(name, value), "   "
    except (yaml.YAMLError, RecursionError):
        return None
    if (section is not None and not children) or set(out) != {"apiVersion", "kind", "metadata", "status"}:
        return None
    return out


def _value(key: str, text: str) -> Any:
    """A scalar as YAML reads it where we wrote it (after ``key: ``), not as a document on its own
    (where ``--- x`` or ``- x`` would mean something else). Memoised (bounded): 1,500 reports
    repeat a few values (``apiVersion``, ``kind``, namespaces, generation 1); only immutable ones."""
    known = _VALUES.get((key, text), _VALUES)
    if known is not _VALUES:
        return known
    data = load(f"{key}: {text}")
    if not isinstance(data, dict) or set(data) != {key}:
        raise yaml.YAMLError(f"{key}: not one scalar")
    value = data[key]
    if type(value) in (str, int, bool, float, type(None)) and len(_VALUES) < 10_000:
        _VALUES[(key, text)] = value
    return value


_VALUES: dict[tuple[str, str], Any] = {}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_readme(docs: Mapping[ObjectKey, StatusDoc], commit: str) -> str:
    """The summary table: one row per policy, one column per cluster (deterministic, no timestamps).

    Each report is read once, and only what the table shows of it is kept (reused reports are
    decoded on every read, see :class:`Reports`)."""
    statuses = {key: _summary(docs[key]) for key in sorted(docs)}
    accepted, invalid, failed, pending = status_summary({k: {"status": v} for k, v in statuses.items()})
    clusters = sorted({str(c) for status in statuses.values() for c in (status.get("clusters") or {})})
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
    for key, status in statuses.items():
        per_cluster = status["clusters"]
        cells = [str(per_cluster[c].get("state", "-")) if c in per_cluster else "-" for c in clusters]
        link = f"[{_cell(str(key))}]({status_file(key)})"
        lines.append(f"| {link} | {status.get('state', '?')} | " + " | ".join(cells) + " |")
    problems = [(key, str(e)) for key, status in statuses.items() for e in (status.get("errors") or [])]
    if problems:
        lines += ["", "## Errors", ""]
        lines += [f"- {_cell(str(key))}: {_cell(e)}" for key, e in problems]
    return "\n".join(lines) + "\n"


def _summary(doc: StatusDoc) -> dict[str, Any]:
    """What the README shows of a report: its state, each cluster's, its errors."""
    status = doc.get("status") or {}
    out = {k: status[k] for k in ("state", "errors") if k in status}
    clusters = status.get("clusters") or {}
    out["clusters"] = (
        {c: _only(v, "state") for c, v in clusters.items()} if isinstance(clusters, dict) else {}
    )
    return out


def _only(value: Any, key: str) -> dict[str, Any]:
    return {key: value[key]} if isinstance(value, dict) and key in value else {}


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


RENDER_MEMO_VERSION = 4
"""Bump when what a memo entry means changes (its layout, or what the digest covers)."""

_CANARY: StatusDoc = {
    "apiVersion": "status.mesh-reconciler.io/v1",
    "kind": "Canary",
    "metadata": {"name": "canary", "namespace": "default"},
    "status": {
        "state": "ACCEPTED",
        "observedGeneration": 3,
        "programmed": True,
        "empty": None,
        "ratio": 0.5,
        "messages": ["one line", "two\nlines", "yes", "007", "a: b", "", "ünïcödé", "x" * 120],
        "clusters": {"c-1": {"objects": [{"kind": "DestinationRule", "state": "applied"}]}},
    },
}
"""Rendered at load and compared with the text stored beside the memo: a renderer that now writes
anything differently (a new PyYAML, a format change here) discards the memo instead of reusing it."""


def _canonical(doc: StatusDoc) -> str | None:
    """A report's data as canonical JSON (key order does not matter: the YAML sorts keys too)."""
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):  # not plain JSON data: no memo (its copy would not be exact)
        return None


@dataclass
class RenderMemo:
    """What the last pass wrote into the status directory, so an unchanged report costs one lstat.

    Per report file: its document (canonical JSON), the file's size and mtime after we wrote or
    compared it, and the :func:`reconciler.status.build.status_fingerprints` entry of the inputs it
    was built from (not its text: a report rewritten from an unchanged document, after git touched
    the file, is rendered again, which is rare and halves what every pass loads). Why: at 1,000
    services a no-op pass spent most of its CPU parsing ~1,500 reports (for their generations),
    rendering them again and comparing. A file with the size and mtime we left it with (git's own
    index trick) is not parsed: its document is the memo's; with the same fingerprint too, it is
    not even built (:meth:`reusable`). Kept outside the repository (the cache clone's git
    directory, :attr:`Checkout.private_dir`); unreadable, foreign or from another renderer (the
    canary renders differently) means empty, which costs only the work it would have saved.
    """

    path: Path | None = None
    files: dict[str, list[Any]] = field(default_factory=dict)
    """relative path -> [document (its canonical JSON, packed: :meth:`pack`), size, mtime_ns,
    fingerprint ("": unknown)]"""
    dictionary: bytes = b""
    """What the documents are compressed against: the first one packed (they repeat the same keys,
    states and cluster names). 1,500 reports: 3.4 MB of JSON a pass holds, 0.4 MB packed."""

    def pack(self, canonical: str) -> str:
        """A document as the memo keeps it: compressed against :attr:`dictionary`, in base64."""
        text = canonical.encode()
        if not self.dictionary:
            self.dictionary = text[:32768]  # zlib reads 32 KiB of it at most
        pack = zlib.compressobj(zdict=self.dictionary)
        return base64.b64encode(pack.compress(text) + pack.flush()).decode("ascii")

    def document_of(self, packed: str) -> StatusDoc | None:
        """A packed document, decoded (a fresh copy); None if it cannot be read back."""
        try:
            unpack = zlib.decompressobj(zdict=self.dictionary)
            text = unpack.decompress(base64.b64decode(packed, validate=True)) + unpack.flush()
            return _decoded(text.decode())
        except (ValueError, zlib.error):  # (binascii.Error and UnicodeDecodeError are ValueErrors)
            return None

    @classmethod
    def load(cls, path: Path | None) -> RenderMemo:
        memo = cls(path)
        if path is None:
            return memo
        try:
            data = msgspec.json.decode(path.read_bytes())
        except (OSError, msgspec.DecodeError):
            return memo
        if (
            isinstance(data, dict)
            and data.get("version") == RENDER_MEMO_VERSION
            and data.get("canary") == render_doc(_CANARY)
            and isinstance(data.get("files"), dict)
            and isinstance(data.get("dictionary"), str)
        ):
            try:
                memo.dictionary = base64.b64decode(data["dictionary"], validate=True)
            except ValueError:
                return memo
            memo.files = {
                rel: entry
                for rel, entry in data["files"].items()
                if isinstance(entry, list)
                and len(entry) == 4
                and isinstance(entry[0], str)
                and isinstance(entry[3], str)
            }
        return memo

    def document(self, rel: str, path: Path) -> StatusDoc | None:
        """The document of the file at ``rel`` if it is exactly as we left it, else None."""
        entry = self.files.get(rel)
        if entry is None or _stat_of(path) != (entry[1], entry[2]):
            return None
        return self.document_of(entry[0])  # a fresh copy: callers own what they read

    def reusable(self, fingerprints: Mapping[ObjectKey, str], root: Path, status_path: str) -> Reports:
        """The reports that need no build: written from the very fingerprint ``fingerprints`` gives
        their policy, and untouched since (the size and mtime we left). The others are built."""
        out = Reports(memo=self)
        if not fingerprints or not self.files:
            return out
        status_root = _status_root(root, status_path)
        base = str(status_root)
        for key, fingerprint in fingerprints.items():
            rel = status_file(key)
            entry = self.files.get(rel)
            if entry is None or not fingerprint or entry[3] != fingerprint:
                continue
            if _stat_of(os.path.join(base, rel)) != (entry[1], entry[2]):
                continue
            doc = self.document_of(entry[0])
            # A plain path reads back to its key by construction; a hashed one must name it inside.
            if doc is not None and (
                not _is_hashed(rel) or _key_of(status_root / rel, status_root, doc) == key
            ):
                out.stored[key] = entry[0]
        return out

    def save(self, files: dict[str, list[Any]]) -> None:
        """Replace the memo with ``files`` (the reports of this pass); best effort, never fatal."""
        if files == self.files:
            return
        self.files = files
        if self.path is None:
            return
        data = {
            "version": RENDER_MEMO_VERSION,
            "canary": render_doc(_CANARY),
            "dictionary": base64.b64encode(self.dictionary).decode("ascii"),
            "files": files,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.encode(data))
            os.replace(tmp, self.path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)


class Reports(Mapping[ObjectKey, StatusDoc]):
    """Status reports by policy, in key order: the ones built in this pass, and the ones reused as
    stored in the memo (canonical JSON), decoded afresh each time one is read.

    Why not decoded once: a no-op pass reuses every report, and 1,500 decoded reports are ~12 MB
    it would hold to its end, for three quick reads (the summary, the README, the metrics). Each
    read of a reused report gets its own copy, as :meth:`RenderMemo.document` gives; a report built
    in this pass is the same dict each time.
    """

    def __init__(
        self, built: Mapping[ObjectKey, StatusDoc] | None = None, memo: RenderMemo | None = None
    ) -> None:
        self.built: dict[ObjectKey, StatusDoc] = dict(built or {})
        self.stored: dict[ObjectKey, str] = {}
        """Reused reports, packed as the memo keeps them (:meth:`RenderMemo.pack`)."""
        self.memo = memo

    def with_built(self, built: Mapping[ObjectKey, StatusDoc]) -> Reports:
        """These reports, with ``built`` in place of any stored one of the same key."""
        out = Reports({**self.built, **built}, self.memo)
        out.stored = {k: v for k, v in self.stored.items() if k not in out.built}
        return out

    def __getitem__(self, key: ObjectKey) -> StatusDoc:
        if key in self.built:
            return self.built[key]
        packed = self.stored[key]
        doc = self.memo.document_of(packed) if self.memo is not None else None
        if doc is None:  # checked when it was stored (RenderMemo.reusable)
            raise KeyError(key)
        return doc

    def __iter__(self) -> Iterator[ObjectKey]:
        return iter(sorted(self.built.keys() | self.stored.keys()))

    def __len__(self) -> int:
        return len(self.built.keys() | self.stored.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.built or key in self.stored


def _decoded(canonical: str) -> StatusDoc | None:
    try:
        doc = msgspec.json.decode(canonical)
    except msgspec.DecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _stat_of(path: Path | str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None


def write_status_dir(
    root: Path,
    status_path: str,
    docs: Mapping[ObjectKey, StatusDoc],
    commit: str,
    memo: RenderMemo | None = None,
    fingerprints: Mapping[ObjectKey, str] | None = None,
) -> bool:
    """Make the status directory match ``docs``; True iff any file was written or removed.

    ``memo`` (kept between passes, see :class:`RenderMemo`): reports that did not change are
    neither rendered nor re-read; it is updated to what this call left on disk. ``fingerprints``
    (:func:`reconciler.status.build.status_fingerprints`) of the inputs ``docs`` were built from: a
    report written from the same fingerprint and untouched since is not even compared.
    """
    status_root = _status_root(root, status_path)
    fingerprints = fingerprints or {}
    changed = False
    wanted = {status_file(key): key for key in docs}
    for rel in sorted(_scan_reports(status_root)):
        if rel not in wanted:
            path = status_root / rel
            path.unlink()
            changed = True
            for parent in (path.parent, path.parent.parent):
                try:
                    parent.rmdir()  # only succeeds when empty
                except OSError:
                    break
    files: dict[str, list[Any]] = {}
    base = str(status_root)
    for rel in sorted(wanted):
        key = wanted[rel]
        fingerprint = fingerprints.get(key, "")
        entry = memo.files.get(rel) if memo is not None else None
        same_inputs = fingerprint and entry is not None and entry[3] == fingerprint
        if same_inputs and entry is not None and _stat_of(os.path.join(base, rel)) == (entry[1], entry[2]):
            files[rel] = entry  # built from the same inputs, and as we left it
            continue
        path = status_root / rel
        doc = docs[key]
        canonical = _canonical(doc) if memo is not None else None
        packed = memo.pack(canonical) if memo is not None and canonical is not None else None
        unchanged = packed is not None and entry is not None and entry[0] == packed
        if unchanged and entry is not None and _stat_of(path) == (entry[1], entry[2]):
            files[rel] = [packed, entry[1], entry[2], fingerprint]  # the same document, as left
            continue
        changed |= _write_if_changed(path, render_doc(doc))
        found = _stat_of(path)
        if packed is not None and found is not None:
            files[rel] = [packed, *found, fingerprint]
    changed |= _write_if_changed(status_root / README, render_readme(docs, commit))
    if memo is not None:
        memo.save(files)
    return changed
