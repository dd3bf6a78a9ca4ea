"""Load every policy under a directory: YAML (with line numbers) -> models + findings.

The loader never raises on user input. Each problem becomes a :class:`~reconciler.findings.Finding`
naming file, line, column, object and field, and every other policy still loads. It also remembers
the identity of each object that failed, so later stages can keep (never prune) what that object
produced before.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import os
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import yaml
from pydantic import BaseModel, ValidationError

from reconciler.findings import FieldPath, Finding, Location, ObjectKey, Severity, error, warning
from reconciler.policy.model import POLICY_KINDS, AnyPolicy, PolicyObject
from reconciler.repo_config import FILENAME as REPO_CONFIG_FILENAME
from reconciler.validation import validation_problems
from reconciler.yamlio import SafeLoader

Positions = dict[FieldPath, tuple[int, int]]
"""(line, column) of every field of a document (a mapping key's position is the key's own)."""

MAX_FILE_BYTES = 4 * 1024 * 1024
"""Files above this size are refused (a policy file is kilobytes; megabytes mean a mistake)."""

MAX_DOCUMENT_NODES = 200_000
"""Expanded YAML node budget per document; protects against alias bombs ("billion laughs")."""

MAX_DOCUMENT_DEPTH = 64
"""Deepest nesting (after expanding aliases) a document may have; a policy is about a dozen deep.

Every later stage (pydantic, spec hashing, translation, deepdiff, JSON output) walks documents
recursively. Bounding the depth once, here, keeps all of them far below Python's recursion limit,
whether the depth comes from brackets (libyaml allows 1000) or from a chain of aliases.
"""

GLOO_API_GROUP_SUFFIX = "solo.io"
"""API groups ending in this are ours (Gloo Mesh / Gloo Platform): an unknown kind there is a typo
of a policy, never somebody else's object, so it is an error rather than a skipped warning."""

YAML_SUFFIXES = (".yaml", ".yml")


P = TypeVar("P", bound=PolicyObject, covariant=True)
K = TypeVar("K", bound=PolicyObject)


@dataclass(frozen=True, eq=False)
class Loaded(Generic[P]):
    """A valid policy plus where it came from; ``Loaded[VirtualDestination]`` for one kind."""

    obj: P
    location: Location
    spec_hash: str
    positions: Positions = field(repr=False, compare=False, default_factory=dict)

    @functools.cached_property
    def key(self) -> ObjectKey:
        """(cached: translation and status ask for it hundreds of thousands of times at scale)"""
        return ObjectKey(self.obj.kind, self.obj.namespace, self.obj.name)

    @functools.cached_property
    def api_version(self) -> str:
        """(cached like :attr:`key`: a status report names it, and need not load the model for it)"""
        return self.obj.api_version

    def location_of(self, path: FieldPath) -> Location:
        """Best location for a field path: the field itself, else its closest ancestor."""
        return _locate(self.positions, path, self.location)

    def error_at(self, path: FieldPath, message: str, *, code: str) -> Finding:
        """An error about the field at ``path`` of this policy: located there, and naming it."""
        return error(message, location=self.location_of(path), object=self.key, path=path, code=code)

    def warning_at(self, path: FieldPath, message: str, *, code: str) -> Finding:
        """A warning about the field at ``path`` of this policy: located there, and naming it."""
        return warning(message, location=self.location_of(path), object=self.key, path=path, code=code)

    # Pickled only by the build cache (reconciler/buildcache.py). The model goes in as a nested
    # pickle, loaded on first use: a pass reusing a build reads the models of the few policies whose
    # status report it rebuilds, not all of them (loading 1,500 models was ~35 ms of a no-op pass).
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["key"] = self.key  # computed now, so that listing keys never loads a model
        state["api_version"] = self.api_version  # ... nor writing a status report
        obj = state.pop("obj", None)
        if obj is not None:
            state[_OBJ_PICKLE] = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    if not TYPE_CHECKING:  # (typed as the field it stands in for; no catch-all for mypy)

        def __getattr__(self, name: str) -> Any:
            pickled = self.__dict__.get(_OBJ_PICKLE)
            if name != "obj" or pickled is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            dictionary = self.__dict__.get(_OBJ_DICTIONARY)
            if dictionary is not None:
                unpack = zlib.decompressobj(zdict=dictionary)
                pickled = unpack.decompress(pickled) + unpack.flush()
            obj = pickle.loads(pickled)
            self.__dict__["obj"] = obj
            self.__dict__.pop(_OBJ_PICKLE, None)
            self.__dict__.pop(_OBJ_DICTIONARY, None)
            return obj


_OBJ_PICKLE = "_obj_pickle"
_OBJ_DICTIONARY = "_obj_dictionary"


LoadedPolicy = Loaded[AnyPolicy]
"""A valid policy of any kind."""


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
    _index: dict[ObjectKey, LoadedPolicy] | None = field(default=None, init=False, repr=False, compare=False)
    _indexed: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.is_error]

    def by_kind(self, model: type[K]) -> list[Loaded[K]]:
        """The valid policies of one kind, typed as such: ``by_kind(VirtualDestination)``."""
        # The isinstance test is what makes the cast true (Loaded is covariant in its policy type).
        return [cast(Loaded[K], p) for p in self.policies if isinstance(p.obj, model)]

    def get(self, key: ObjectKey) -> LoadedPolicy | None:
        # Indexed: status and translation look up every policy, and a scan each made runs
        # quadratic in the repository's size. Rebuilt whenever the list changed size (load
        # appends, mark_invalid removes).
        if self._index is None or self._indexed != len(self.policies):
            self._index = {}
            for p in self.policies:
                self._index.setdefault(p.key, p)
            self._indexed = len(self.policies)
        return self._index.get(key)

    # Pickled only by the build cache. Each model goes in as its own pickle (see Loaded), and these
    # are compressed against a dictionary made of one model of each kind: they repeat the same
    # class and field names, so 1,500 models take 0.2 MB instead of 2.4 MB of every pass reusing
    # the build (decompressing one is ~4 µs, for the few a pass loads).
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_index"], state["_indexed"] = None, -1
        models = [p.__getstate__() for p in self.policies]
        # (a model still compressed, from a reused build never loaded, stays as it is)
        plain = [
            (p, m)
            for p, m in zip(self.policies, models, strict=True)
            if _OBJ_PICKLE in m and _OBJ_DICTIONARY not in m
        ]
        samples: dict[str, bytes] = {}
        for p, model in plain:
            samples.setdefault(p.key.kind, model[_OBJ_PICKLE])
        dictionary = b"".join(samples.values())[-32768:]  # zlib uses the last 32 KiB at most
        for _, model in plain:
            if dictionary:
                pack = zlib.compressobj(zdict=dictionary)
                model[_OBJ_PICKLE] = pack.compress(model[_OBJ_PICKLE]) + pack.flush()
                model[_OBJ_DICTIONARY] = dictionary
        state["policies"] = models
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        models = state.pop("policies")
        self.__dict__.update(state)
        self.policies = []
        for model in models:
            policy: LoadedPolicy = Loaded.__new__(Loaded)
            policy.__setstate__(model)
            self.policies.append(policy)

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
    positions: Positions
    line: int
    column: int
    findings: list[Finding]
    refused: Finding | None = None
    """Set when the document could not be turned into data at all (its file is then unreadable)."""
    identity: ObjectKey | None = None
    """For a refused document: who it is, if its kind and metadata could still be read."""
    plain_keys: bool = False
    """Every mapping key is a string, so the data hashes as it is (no :func:`_plain` copy)."""


def _parse_documents(text: str, rel: str) -> tuple[list[_Document], Finding | None]:
    """Parse a multi-document YAML stream, keeping a path -> (line, column) map per document.

    A document that is syntactically fine but cannot become data (recursive alias, alias bomb, too
    deep, a scalar its tag cannot hold) is returned *refused*, and the documents after it still
    load; a syntax error ends the stream (the parser cannot resynchronise).
    """
    loader = SafeLoader(text)
    docs: list[_Document] = []
    may_be_tree = "&" not in text
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            here = (node.start_mark.line + 1, node.start_mark.column + 1)
            # Without an '&' in the file there is no anchor, hence no alias: the document is a tree
            # and one iterative pass checks, records and builds it. Anything unusual (or bad) takes
            # the full path, which is the one that words refusals.
            tree = _build_tree(loader, node, rel) if may_be_tree else None
            if tree is not None:
                data, positions, findings = tree
                docs.append(_Document(data, positions, *here, findings, plain_keys=True))
                continue
            refusal = _refuse_shape(node, rel)
            if refusal is None:
                positions, findings = {}, []
                _record_positions(node, (), positions, findings, rel, set())
                data, refusal = _construct(loader, node, rel)
                if refusal is None:
                    docs.append(_Document(data, positions, *here, findings))
                    continue
            docs.append(_Document(None, {}, *here, [], refused=refusal, identity=_node_identity(node)))
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
    except RecursionError:
        # Only PyYAML's pure-Python composer recurses per nesting level (libyaml stops at 1000 levels
        # with a YAMLError); either way a document this deep is not a policy.
        return docs, error(
            f"YAML nests too deeply (more than {MAX_DOCUMENT_DEPTH} levels); refused",
            location=Location(rel),
            code="TooDeep",
        )
    finally:
        loader.dispose()
    return docs, None


_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _build_tree(
    loader: yaml.SafeLoader, root: yaml.Node, rel: str
) -> tuple[Any, Positions, list[Finding]] | None:
    """Data, positions and duplicate keys of an alias-free document, in one iterative pass.

    The fast path for the common document (a tree of plain maps, lists and scalars with string
    keys): the same results as :func:`_refuse_shape` + :func:`_record_positions` + PyYAML's
    constructor, at a third of their cost (policy loading is a large part of every pass). Returns
    None for anything it does not handle (a non-string or non-scalar key, merge keys, ``!!set``
    and other collection tags, a scalar its tag cannot hold, a document over the size or depth
    budget); the caller then runs the full path, which also words any refusal.
    """
    constructors = loader.yaml_constructors
    positions: Positions = {(): (root.start_mark.line + 1, root.start_mark.column + 1)}
    findings: list[Finding] = []
    count = 0
    holder: list[Any] = [None]
    # (node, its path, its depth, the container it goes in, its key or index there)
    stack: list[tuple[yaml.Node, FieldPath, int, Any, Any]] = [(root, (), 1, holder, 0)]
    try:
        while stack:
            node, path, level, parent, slot = stack.pop()
            count += 1
            if level > MAX_DOCUMENT_DEPTH or count > MAX_DOCUMENT_NODES:
                return None
            if isinstance(node, yaml.ScalarNode):
                tag = node.tag
                parent[slot] = node.value if tag == _STR_TAG else constructors[tag](loader, node)
            elif isinstance(node, yaml.MappingNode):
                if node.tag != _MAP_TAG:
                    return None
                mapping: dict[str, Any] = {}
                parent[slot] = mapping
                keys_seen: dict[str, tuple[int, int]] = {}
                children: list[tuple[yaml.Node, FieldPath, int, Any, Any]] = []
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR_TAG:
                        return None
                    count += 1
                    key = key_node.value
                    mark = key_node.start_mark
                    pos = (mark.line + 1, mark.column + 1)
                    if key in keys_seen and key != "<<":
                        findings.append(_duplicate_key(key, keys_seen[key], pos, (*path, key), rel))
                    keys_seen[key] = pos
                    child = (*path, key)
                    positions[child] = pos  # keys point at the key, not at the value
                    children.append((value_node, child, level + 1, mapping, key))
                # Popped in document order: a repeated key keeps its first place and its last value,
                # as in PyYAML.
                stack.extend(reversed(children))
            elif isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    return None
                items = node.value
                sequence: list[Any] = [None] * len(items)
                parent[slot] = sequence
                for i in range(len(items) - 1, -1, -1):
                    item = items[i]
                    child = (*path, i)
                    mark = item.start_mark
                    positions.setdefault(child, (mark.line + 1, mark.column + 1))
                    stack.append((item, child, level + 1, sequence, i))
            else:
                return None
    except Exception:  # a scalar its tag cannot hold, an unknown tag: the full path reports it
        return None
    # Duplicate keys are found per mapping before its children; report them in document order.
    findings.sort(key=lambda f: (f.location.line, f.location.column) if f.location else (0, 0))
    return holder[0], positions, findings


def _children(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node | None]]:
    """A node's children, each with the key node it is the value of (None for keys and items)."""
    if isinstance(node, yaml.MappingNode):
        out: list[tuple[yaml.Node, yaml.Node | None]] = []
        for k, v in node.value:
            out += [(k, None), (v, k)]
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(item, None) for item in node.value]
    return []


def _refuse_shape(root: yaml.Node, rel: str) -> Finding | None:
    """Refuse a document graph that is cyclic, too large or too deep once aliases are expanded.

    Iterative on purpose: this is the check that makes every recursive walk after it safe, so it
    must not recurse itself. Each node is visited once (memoised by identity), so an alias bomb
    costs its size in the file, not its expanded size.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path = {id(root)}
    stack: list[tuple[yaml.Node, list[tuple[yaml.Node, yaml.Node | None]], int]] = [
        (root, _children(root), 0)
    ]
    while stack:
        node, kids, i = stack[-1]
        if i < len(kids):
            stack[-1] = (node, kids, i + 1)
            child, key = kids[i]
            if id(child) in on_path:
                return _recursive_alias(node, child, key, rel)
            if id(child) not in size:
                on_path.add(id(child))
                stack.append((child, _children(child), 0))
            continue
        stack.pop()
        on_path.discard(id(node))
        size[id(node)] = min(1 + sum(size[id(c)] for c, _ in kids), MAX_DOCUMENT_NODES + 1)
        depth[id(node)] = 1 + max((depth[id(c)] for c, _ in kids), default=0)
        if size[id(node)] > MAX_DOCUMENT_NODES:
            return error(
                f"document expands to more than {MAX_DOCUMENT_NODES} YAML nodes (alias bomb?); refused",
                location=Location(rel, root.start_mark.line + 1, root.start_mark.column + 1),
                code="TooLarge",
            )
        if depth[id(node)] > MAX_DOCUMENT_DEPTH:
            return error(
                f"document nests more than {MAX_DOCUMENT_DEPTH} levels deep (counting aliases); refused",
                location=Location(rel, node.start_mark.line + 1, node.start_mark.column + 1),
                code="TooDeep",
            )
    return None


def _recursive_alias(parent: yaml.Node, anchor: yaml.Node, key: yaml.Node | None, rel: str) -> Finding:
    """The finding for an alias that refers to an anchor it is nested in (``&a {self: *a}``).

    Nodes do not keep the alias's own position; the key it is the value of is on the same line in
    any realistic file, else the enclosing collection is the closest we know.
    """
    at = key.start_mark if key is not None else parent.start_mark
    where = f" (at key {key.value!r})" if isinstance(key, yaml.ScalarNode) else ""
    return error(
        f"recursive YAML alias (an anchor used inside itself){where}; the anchor is at line "
        f"{anchor.start_mark.line + 1}, column {anchor.start_mark.column + 1}; refused",
        location=Location(rel, at.line + 1, at.column + 1),
        code="RecursiveAlias",
    )


def _construct(loader: yaml.SafeLoader, node: yaml.Node, rel: str) -> tuple[Any, Finding | None]:
    """Build the document's data; a scalar its tag cannot hold becomes a finding at that scalar.

    PyYAML's constructors raise plain ValueError/TypeError/AttributeError for e.g. ``2020-13-01``
    (an implicit timestamp with month 13), ``!!int xx`` or a 5000-digit integer.
    """
    try:
        return loader.construct_document(node), None
    except yaml.MarkedYAMLError:
        _reset_constructor(loader)
        raise
    except (ValueError, TypeError, AttributeError, OverflowError, KeyError) as exc:
        _reset_constructor(loader)
        bad, problem = _first_bad_scalar(loader, node)
        mark = (bad or node).start_mark
        return None, error(
            f"cannot read value: {problem or exc}",
            location=Location(rel, mark.line + 1, mark.column + 1),
            code="BadValue",
        )


def _reset_constructor(loader: yaml.SafeLoader) -> None:
    # construct_document resets this state only when it succeeds; stale entries would make the next
    # document's nodes look "recursive" or reuse objects from this one.
    loader.constructed_objects = {}
    loader.recursive_objects = {}
    loader.state_generators = []
    loader.deep_construct = False


def _first_bad_scalar(loader: yaml.SafeLoader, root: yaml.Node) -> tuple[yaml.Node | None, str]:
    """The first scalar (in document order) that its constructor rejects, with the reason."""
    todo: list[yaml.Node] = [root]
    seen: set[int] = set()
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node, deep=True)
            except Exception as exc:  # any constructor failure is the answer here
                _reset_constructor(loader)
                return node, str(exc) or type(exc).__name__
        todo.extend(reversed([c for c, _ in _children(node)]))
    _reset_constructor(loader)
    return None, ""


def _node_identity(node: yaml.Node) -> ObjectKey | None:
    """kind/namespace/name read straight from the node graph, for a document that cannot be data."""
    top = _scalar_fields(node)
    meta = next((v for k, v in _mapping_items(node) if k == "metadata"), None)
    fields = _scalar_fields(meta) if meta is not None else {}
    kind, name = top.get("kind"), fields.get("name")
    if not kind or name is None:
        return None
    return ObjectKey(kind, fields.get("namespace", "default"), name)


def _mapping_items(node: yaml.Node) -> list[tuple[str, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        return []
    return [(k.value, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]


def _scalar_fields(node: yaml.Node) -> dict[str, str]:
    return {k: v.value for k, v in _mapping_items(node) if isinstance(v, yaml.ScalarNode)}


def _duplicate_key(
    key: str, first: tuple[int, int], pos: tuple[int, int], path: FieldPath, rel: str
) -> Finding:
    """A mapping key written twice (YAML keeps the last value silently; a policy must not)."""
    return error(
        f"duplicate key {key!r} (first at line {first[0]}); YAML keeps only the last one",
        location=Location(rel, *pos),
        path=path,
        code="DuplicateKey",
    )


def _record_positions(
    node: yaml.Node,
    path: FieldPath,
    out: Positions,
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
                findings.append(_duplicate_key(key, keys_seen[key], pos, (*path, key), rel))
            keys_seen[key] = pos
            out[(*path, key)] = pos
            _record_positions(value_node, (*path, key), out, findings, rel, seen)
            out[(*path, key)] = pos  # keys point at the key, not at the value
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_positions(item, (*path, i), out, findings, rel, seen)


def _locate(positions: Positions, path: FieldPath, fallback: Location) -> Location:
    for n in range(len(path), -1, -1):
        pos = positions.get(path[:n])
        if pos is not None:
            return Location(fallback.file, *pos)
    return fallback


# --------------------------------------------------------------------------------------------------
# validation -> findings


def _plain(value: Any) -> Any:
    """JSON-able copy with string keys (YAML allows null, numeric or boolean keys)."""
    if isinstance(value, dict):
        return {repr(k) if not isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def spec_hash(raw: Any, plain_keys: bool = False) -> str:
    """Hash of a spec's content, independent of formatting, comments and key order.

    ``plain_keys`` says every mapping key already is a string (known from parsing), which spares
    the :func:`_plain` copy; the hash is the same either way.
    """
    canonical = json.dumps(
        raw if plain_keys else _plain(raw), sort_keys=True, separators=(",", ":"), default=str
    )
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


def validation_findings(
    exc: ValidationError, model: type[BaseModel], key: ObjectKey | None, doc: _Document, rel: str
) -> list[Finding]:
    out = []
    fallback = Location(rel, doc.line, doc.column)
    for loc, msg in validation_problems(exc, model):
        out.append(error(msg, location=_locate(doc.positions, loc, fallback), object=key, path=loc))
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
    if doc.refused is not None:
        _refused_document(doc, rel, result)
        return
    data = doc.data
    if data is None:
        return  # empty document (e.g. a trailing '---')
    if isinstance(data, dict) and data.get("kind") == "List" and isinstance(data.get("items"), list):
        # Findings made while parsing (duplicate keys) belong to the item they are in: they make that
        # item invalid exactly as in a document of its own. The rest concern the List itself.
        claimed: set[int] = set()
        for i, item in enumerate(data["items"]):
            sub = {p[2:]: v for p, v in doc.positions.items() if p[:2] == ("items", i)}
            line, col = doc.positions.get(("items", i), (doc.line, doc.column))
            own = []
            for n, f in enumerate(doc.findings):
                if f.path[:2] == ("items", i) and len(f.path) > 2:
                    own.append(dataclasses.replace(f, path=f.path[2:]))
                    claimed.add(n)
            item_doc = _Document(item, sub, line, col, own, plain_keys=doc.plain_keys)
            _load_document(item_doc, rel, result, first_seen)
        result.findings.extend(f for n, f in enumerate(doc.findings) if n not in claimed)
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
        _unknown_kind(data, kind, doc, here, rel, result)
        return
    key = _identity(data)
    hashed = spec_hash(data.get("spec"), doc.plain_keys)
    if key is not None:
        result.spec_hashes[key] = hashed
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
    policy = cast(AnyPolicy, obj)  # POLICY_KINDS maps each kind to its model
    result.policies.append(Loaded(obj=policy, location=here, spec_hash=hashed, positions=doc.positions))


def _refused_document(doc: _Document, rel: str, result: PolicySet) -> None:
    """A document that never became data: report it, and keep what it may have produced."""
    assert doc.refused is not None
    key = doc.identity
    result.findings.append(dataclasses.replace(doc.refused, object=key))
    # Its content is unknown, so nothing it produced may be pruned: the file counts as unreadable,
    # and when the document still says which policy it is, that policy's objects are held too.
    result.unreadable_files.append(rel)
    if key is not None and key.kind in POLICY_KINDS:
        result.invalid.setdefault(key, Location(rel, doc.line, doc.column))


def _is_our_api_group(api_version: str) -> bool:
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    return group == GLOO_API_GROUP_SUFFIX or group.endswith("." + GLOO_API_GROUP_SUFFIX)


def guess_kind(kind: str) -> tuple[str | None, bool]:
    """The policy kind ``kind`` is most likely a typo of, and whether that guess is unambiguous.

    Compared case-insensitively (``virtualdestination`` is an obvious VirtualDestination). The guess
    is unambiguous when it is close (ratio >= 0.8) and clearly closer than any other kind, so that
    holding the guessed policy's objects protects the right ones.
    """
    scores = sorted(
        ((difflib.SequenceMatcher(None, kind.lower(), k.lower()).ratio(), k) for k in POLICY_KINDS),
        reverse=True,
    )
    if not scores or scores[0][0] < 0.6:
        return None, False
    best, name = scores[0]
    runner_up = scores[1][0] if len(scores) > 1 else 0.0
    return name, best >= 0.8 and best - runner_up >= 0.15


def _unknown_kind(
    data: dict[str, Any], kind: str, doc: _Document, here: Location, rel: str, result: PolicySet
) -> None:
    api_version = data["apiVersion"]
    understood = ", ".join(POLICY_KINDS)
    if not _is_our_api_group(api_version):
        # Somebody else's object (a ConfigMap, a CI file): not ours to judge.
        result.findings.append(
            warning(
                f"unknown kind {api_version}/{kind}; skipped (understood: {understood})",
                location=here,
                code="UnknownKind",
            )
        )
        return
    # In a Gloo Mesh API group an unknown kind is almost surely a typo of a policy. As a warning the
    # policy would silently vanish and its Istio objects be pruned, so it is an error.
    at = _locate(doc.positions, ("kind",), here)
    written = _identity(data)
    guess, unambiguous = guess_kind(kind)
    key = written
    if written is not None and guess is not None and unambiguous:
        key = ObjectKey(guess, written.namespace, written.name)
        result.invalid.setdefault(key, at)
        result.spec_hashes.setdefault(key, spec_hash(data.get("spec")))
    # Which policy this really is stays a guess: callers must treat the file as not fully understood.
    result.unreadable_files.append(rel)
    hint = f" (did you mean {guess!r}?)" if guess is not None else ""
    result.findings.append(
        error(
            f"unknown kind {kind!r}{hint} in Gloo Mesh apiVersion {api_version}; refused, because a "
            f"policy the reconciler cannot read would silently stop being applied (understood: {understood})",
            location=at,
            object=key,
            path=("kind",),
            code="UnknownKind",
        )
    )
