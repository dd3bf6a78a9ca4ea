"""Load every policy under a directory: YAML (with line numbers) -> models + findings.

The loader never raises on user input. Each problem becomes a :class:`~reconciler.findings.Finding`
naming file, line, column, object and field, and every other policy still loads. It also remembers
the identity of each object that failed, so later stages can keep (never prune) what that object
produced before.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from reconciler.findings import Finding, Location, ObjectKey, Severity, error, warning
from reconciler.policy.model import POLICY_KINDS, AnyPolicy, PolicyObject
from reconciler.repo_config import FILENAME as REPO_CONFIG_FILENAME

PathKey = tuple[str | int, ...]

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Files above this size are refused (a policy file is kilobytes; megabytes mean a mistake)."""

MAX_DOCUMENT_NODES = 200_000
"""Expanded YAML node budget per document; protects against alias bombs ("billion laughs")."""

YAML_SUFFIXES = (".yaml", ".yml")

# libyaml's parser (when PyYAML was built with it) is ~10x faster and reports the same marks.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, eq=False)
class LoadedPolicy:
    """A valid policy plus where it came from."""

    obj: AnyPolicy
    location: Location
    spec_hash: str
    positions: dict[PathKey, tuple[int, int]] = field(repr=False, compare=False, default_factory=dict)

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.obj.kind, self.obj.namespace, self.obj.name)

    def location_of(self, path: PathKey) -> Location:
        """Best location for a field path: the field itself, else its closest ancestor."""
        return _locate(self.positions, path, self.location)


@dataclass
class PolicySet:
    """Everything found under one root: valid policies, findings, and identities that failed."""

    root: Path
    policies: list[LoadedPolicy] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    invalid: dict[ObjectKey, Location] = field(default_factory=dict)
    """Policies that exist in the repository but failed to load or validate (kept, never pruned)."""
    spec_hashes: dict[ObjectKey, str] = field(default_factory=dict)
    """Spec hash of every identified policy, valid or not (drives observedGeneration)."""
    unreadable_files: list[str] = field(default_factory=list)
    """Files whose objects could not even be identified; pruning is unsafe while any exist."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    def by_kind(self, kind: str) -> list[LoadedPolicy]:
        return [p for p in self.policies if p.obj.kind == kind]

    def get(self, key: ObjectKey) -> LoadedPolicy | None:
        for p in self.policies:
            if p.key == key:
                return p
        return None

    def mark_invalid(self, policy: LoadedPolicy, findings: list[Finding]) -> None:
        """Move a policy that failed a cross-object check out of the valid set."""
        self.findings.extend(findings)
        if policy in self.policies:
            self.policies.remove(policy)
        self.invalid.setdefault(policy.key, policy.location)


# --------------------------------------------------------------------------------------------------
# walking the tree


def iter_policy_files(
    root: Path, exclude: tuple[str, ...] = ("status",)
) -> Iterator[tuple[Path, Finding | None]]:
    """Yield YAML files under root in sorted order, with a finding for files that must be refused.

    Hidden directories (``.git``), the status directory and ``reconciler.yaml`` are skipped;
    symlinks are followed only while they stay inside the repository.
    """
    root_real = root.resolve()
    excluded = {root_real / e for e in exclude}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        current = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            full = current / d
            if d.startswith(".") or full.resolve() in excluded:
                continue
            if full.is_symlink():
                target = full.resolve()
                if not _inside(target, root_real):
                    yield (
                        full,
                        error(
                            f"symlinked directory points outside the repository ({target}); refused",
                            location=Location(_rel(full, root)),
                            code="SymlinkEscape",
                        ),
                    )
                continue  # symlinked directories inside the repo are already walked directly
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(YAML_SUFFIXES):
                continue
            full = current / name
            if current.resolve() == root_real and name == REPO_CONFIG_FILENAME:
                continue
            if full.is_symlink() and not _inside(full.resolve(), root_real):
                yield (
                    full,
                    error(
                        f"symlink points outside the repository ({full.resolve()}); refused",
                        location=Location(_rel(full, root)),
                        code="SymlinkEscape",
                    ),
                )
                continue
            yield full, None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------------
# YAML with positions


@dataclass
class _Document:
    data: Any
    positions: dict[PathKey, tuple[int, int]]
    line: int
    column: int
    findings: list[Finding]


def _parse_documents(text: str, rel: str) -> tuple[list[_Document], Finding | None]:
    """Parse a multi-document YAML stream, keeping a path -> (line, column) map per document."""
    loader = _SafeLoader(text)
    docs: list[_Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            positions: dict[PathKey, tuple[int, int]] = {}
            findings: list[Finding] = []
            size = _expanded_size(node, {})
            if size > MAX_DOCUMENT_NODES:
                mark = node.start_mark
                return docs, error(
                    f"document expands to more than {MAX_DOCUMENT_NODES} YAML nodes (alias bomb?); refused",
                    location=Location(rel, mark.line + 1, mark.column + 1),
                    code="TooLarge",
                )
            _record_positions(node, (), positions, findings, rel, set())
            data = loader.construct_document(node)
            docs.append(
                _Document(data, positions, node.start_mark.line + 1, node.start_mark.column + 1, findings)
            )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or "malformed YAML"
        context = f" {exc.context}" if exc.context else ""
        return docs, error(
            f"malformed YAML: {problem}{context}", location=Location(rel, line, col), code="MalformedYAML"
        )
    except yaml.YAMLError as exc:
        return docs, error(f"malformed YAML: {exc}", location=Location(rel), code="MalformedYAML")
    finally:
        loader.dispose()
    return docs, None


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    cached = memo.get(id(node))
    if cached is not None:
        return cached
    memo[id(node)] = 1  # cycles (recursive aliases) count once
    total = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo) + _expanded_size(v, memo)
            if total > MAX_DOCUMENT_NODES:
                break
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            total += _expanded_size(item, memo)
            if total > MAX_DOCUMENT_NODES:
                break
    memo[id(node)] = total
    return total


def _record_positions(
    node: yaml.Node,
    path: PathKey,
    out: dict[PathKey, tuple[int, int]],
    findings: list[Finding],
    rel: str,
    seen: set[int],
) -> None:
    out.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if id(node) in seen:  # an alias: its children were recorded at the anchor
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys_seen: dict[str, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in keys_seen and key != "<<":
                findings.append(
                    error(
                        f"duplicate key {key!r} (first at line {keys_seen[key][0]}); YAML keeps only the last one",
                        location=Location(rel, *pos),
                        field=_format_path((*path, key)),
                        code="DuplicateKey",
                    )
                )
            keys_seen[key] = pos
            out[(*path, key)] = pos
            _record_positions(value_node, (*path, key), out, findings, rel, seen)
            out[(*path, key)] = pos  # keys point at the key, not at the value
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_positions(item, (*path, i), out, findings, rel, seen)


def _locate(positions: dict[PathKey, tuple[int, int]], path: PathKey, fallback: Location) -> Location:
    for n in range(len(path), -1, -1):
        pos = positions.get(tuple(path[:n]))
        if pos is not None:
            return Location(fallback.file, *pos)
    return fallback


def _format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# --------------------------------------------------------------------------------------------------
# validation -> findings


def _plain(value: Any) -> Any:
    """JSON-able copy with string keys (YAML allows null, numeric or boolean keys)."""
    if isinstance(value, dict):
        return {repr(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def spec_hash(raw: Any) -> str:
    """Hash of a spec's content, independent of formatting, comments and key order."""
    canonical = json.dumps(_plain(raw), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _identity(raw: dict[str, Any]) -> ObjectKey | None:
    kind = raw.get("kind")
    meta = raw.get("metadata")
    if not isinstance(kind, str) or not isinstance(meta, dict):
        return None
    name = meta.get("name")
    namespace = meta.get("namespace", "default")
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return ObjectKey(kind, namespace, name)


def _known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field aliases accepted at ``loc`` (for "did you mean" hints on unknown fields)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        if isinstance(part, int):
            continue
        found = None
        for name, info in current.model_fields.items():
            aliases = {name, info.alias}
            va = info.validation_alias
            if isinstance(va, str):
                aliases.add(va)
            elif va is not None and hasattr(va, "choices"):
                aliases.update(c for c in va.choices if isinstance(c, str))
            if part in aliases:
                found = info.annotation
                break
        if found is None:
            return []
        current = _unwrap_model(found)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _unwrap_model(annotation: Any) -> Any:
    """Find the BaseModel inside Optional[...] / list[...] / Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def validation_findings(
    exc: ValidationError, model: type[BaseModel], key: ObjectKey | None, doc: _Document, rel: str
) -> list[Finding]:
    out = []
    fallback = Location(rel, doc.line, doc.column)
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            known = _known_fields(model, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            if known:
                msg += f"; allowed here: {', '.join(sorted(known))}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append(
            error(msg, location=_locate(doc.positions, loc, fallback), object=key, field=_format_path(loc))
        )
    return out


# --------------------------------------------------------------------------------------------------
# the entry point


def load_policies(root: Path, status_path: str = "status") -> PolicySet:
    """Load and validate every policy under ``root`` (object-level checks only).

    Cross-object checks (unique hostnames, references) live in :mod:`reconciler.policy.checks`;
    :func:`reconciler.policy.load_and_check` runs both.
    """
    result = PolicySet(root=root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such directory")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a directory")
    first_seen: dict[ObjectKey, Location] = {}
    for path, refusal in iter_policy_files(root, exclude=(status_path,)):
        rel = _rel(path, root)
        if refusal is not None:
            result.findings.append(refusal)
            result.unreadable_files.append(rel)
            continue
        _load_file(path, rel, result, first_seen)
    return result


def _load_file(path: Path, rel: str, result: PolicySet, first_seen: dict[ObjectKey, Location]) -> None:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            result.findings.append(
                error(
                    f"file is {size} bytes, above the {MAX_FILE_BYTES}-byte limit for a policy file; refused",
                    location=Location(rel),
                    code="TooLarge",
                )
            )
            result.unreadable_files.append(rel)
            return
        data = path.read_bytes()
    except OSError as exc:
        result.findings.append(
            error(f"cannot read file: {exc.strerror or exc}", location=Location(rel), code="IO")
        )
        result.unreadable_files.append(rel)
        return
    if b"\x00" in data:
        result.findings.append(
            error("binary file (contains NUL bytes); not YAML", location=Location(rel), code="Binary")
        )
        result.unreadable_files.append(rel)
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        result.findings.append(
            error(f"not UTF-8 text (byte {exc.start}); not YAML", location=Location(rel), code="Binary")
        )
        result.unreadable_files.append(rel)
        return
    docs, parse_error = _parse_documents(text, rel)
    if parse_error is not None:
        result.findings.append(parse_error)
        result.unreadable_files.append(rel)
    for doc in docs:
        _load_document(doc, rel, result, first_seen)


def _load_document(
    doc: _Document, rel: str, result: PolicySet, first_seen: dict[ObjectKey, Location]
) -> None:
    here = Location(rel, doc.line, doc.column)
    data = doc.data
    if data is None:
        return  # empty document (e.g. a trailing '---')
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        for i, item in enumerate(data["items"]):
            sub = {p[2:]: v for p, v in doc.positions.items() if p[:2] == ("items", i)}
            line, col = doc.positions.get(("items", i), (doc.line, doc.column))
            _load_document(_Document(item, sub, line, col, []), rel, result, first_seen)
        return
    if not isinstance(data, dict):
        what = "a list" if isinstance(data, list) else f"a {type(data).__name__} scalar"
        result.findings.append(
            error(
                f"document is {what}; each YAML document must be one object with apiVersion, kind and metadata",
                location=here,
                code="NotAnObject",
            )
        )
        result.unreadable_files.append(rel)
        return
    kind = data.get("kind")
    if not isinstance(kind, str) or not isinstance(data.get("apiVersion"), str):
        result.findings.append(
            error(
                "document has no apiVersion/kind; it is not a Kubernetes object",
                location=here,
                code="NotAnObject",
            )
        )
        result.unreadable_files.append(rel)
        return
    model = POLICY_KINDS.get(kind)
    if model is None:
        result.findings.append(
            warning(
                f"unknown kind {data['apiVersion']}/{kind}; skipped (understood: {', '.join(POLICY_KINDS)})",
                location=here,
                code="UnknownKind",
            )
        )
        return
    key = _identity(data)
    if key is not None:
        result.spec_hashes[key] = spec_hash(data.get("spec"))
        if key in first_seen:
            other = first_seen[key]
            result.findings.append(
                error(
                    f"duplicate object: also defined at {other}",
                    location=here,
                    object=key,
                    code="Duplicate",
                    related=(other,),
                )
            )
            result.findings.append(
                error(
                    f"duplicate object: also defined at {here}",
                    location=other,
                    object=key,
                    code="Duplicate",
                    related=(here,),
                )
            )
            result.invalid[key] = here
            for p in list(result.policies):
                if p.key == key:
                    result.policies.remove(p)
            return
        first_seen[key] = here
    else:
        # Without a name we cannot tell which managed objects came from it: keep everything.
        result.unreadable_files.append(rel)
    findings = [dataclasses.replace(f, object=key) for f in doc.findings]
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        findings.extend(validation_findings(exc, model, key, doc, rel))
        obj = None
    result.findings.extend(findings)
    if obj is None or any(f.severity is Severity.ERROR for f in findings):
        if key is not None:
            result.invalid[key] = here
        return
    assert isinstance(obj, PolicyObject)
    result.policies.append(
        LoadedPolicy(obj=obj, location=here, spec_hash=spec_hash(data.get("spec")), positions=doc.positions)  # type: ignore[arg-type]
    )
