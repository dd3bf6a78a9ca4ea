"""YAML in and out, for every stage: one loader, one dumper, one deterministic format.

libyaml's C loader and emitter are ~10x faster than PyYAML's pure-Python ones and report the same
marks; PyYAML built without libyaml falls back to those transparently. Output is deterministic
(sorted keys, block style, multi-line strings as ``|`` blocks) so the same data is byte-identical
output — status files, snapshots and diffs never change for nothing.

A leaf module (it imports nothing of ours), so the engine, discovery and status can write YAML
without importing the CLI's printing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import yaml

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


_RESOLVED_MAX = 100_000
"""Bound on the memo below; policy files repeat a few thousand distinct scalars."""


class _MemoisedResolve:
    """``Resolver.resolve`` with the implicit tag of each scalar memoised (a mixin for both classes).

    Even libyaml's loader and emitter call back into Python's regex-based resolver for every
    scalar (keys included, twice per scalar when writing): about a quarter of parsing a policy
    repository, and of writing status reports. The same few thousand strings (``name``,
    ``us-east-1``, ``5s``) recur everywhere, and the tag depends only on the text and its style
    (the safe resolvers have no path resolvers), so the memo cannot change a result.
    """

    _resolved: ClassVar[dict[tuple[str, Any], str]]
    yaml_path_resolvers: ClassVar[dict[Any, Any]]

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        tag = self._resolved.get((value, implicit)) if kind is yaml.ScalarNode else None
        if tag is not None:
            return tag
        tag = str(yaml.resolver.BaseResolver.resolve(self, kind, value, implicit))  # type: ignore[arg-type,no-untyped-call]
        if kind is yaml.ScalarNode and not self.yaml_path_resolvers and len(self._resolved) < _RESOLVED_MAX:
            self._resolved[(value, implicit)] = tag
        return tag


class SafeLoader(_MemoisedResolve, _BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader (libyaml's when present), scalar tags memoised."""

    _resolved: ClassVar[dict[tuple[str, Any], str]] = {}


class _Dumper(_MemoisedResolve, _BaseDumper):  # type: ignore[misc,valid-type]
    """The safe dumper (libyaml's when present), scalar tags memoised."""

    _resolved: ClassVar[dict[tuple[str, Any], str]] = {}


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)

_FORMAT: dict[str, Any] = {
    "sort_keys": True,
    "default_flow_style": False,
    "allow_unicode": True,
    "width": 100,
}


def load(text: str) -> Any:
    """One YAML document (safe tags only)."""
    return yaml.load(text, Loader=SafeLoader)


_EMIT: dict[str, Any] = {k: v for k, v in _FORMAT.items() if k in ("allow_unicode", "width")}
"""The emitter's share of :data:`_FORMAT` (sorting and block style are the node builder's)."""

_STR, _INT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null"))
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class _NotPlain(Exception):
    """The data holds something the node builder leaves to PyYAML's representer."""


def _node(value: Any, seen: set[int]) -> yaml.Node:
    """The node PyYAML's representer would make for ``value`` (with :data:`_FORMAT`), built directly.

    The representer's generic dispatch is most of the cost of writing YAML (status reports, ``-o
    yaml``); for plain JSON-like data (exact str/int/bool/None, dicts with str keys, lists) the
    nodes are simple to build, and libyaml's emitter still decides every quoting and line break.
    Anything else (floats, a container referenced twice, which PyYAML writes as an alias,
    subclasses) raises :class:`_NotPlain` and the whole document goes through PyYAML.
    """
    kind = type(value)
    if kind is str:
        return yaml.ScalarNode(_STR, value, style="|" if "\n" in value else None)
    if kind is dict:
        if id(value) in seen or any(type(k) is not str for k in value):
            raise _NotPlain
        seen.add(id(value))
        pairs = [(_node(k, seen), _node(value[k], seen)) for k in sorted(value)]
        return yaml.MappingNode(_MAP, pairs, flow_style=False)
    if kind is list:
        if id(value) in seen:
            raise _NotPlain
        seen.add(id(value))
        return yaml.SequenceNode(_SEQ, [_node(v, seen) for v in value], flow_style=False)
    if kind is bool:
        return yaml.ScalarNode(_BOOL, "true" if value else "false")
    if kind is int:
        return yaml.ScalarNode(_INT, str(value))
    if value is None:
        return yaml.ScalarNode(_NULL, "null")
    raise _NotPlain


def to_yaml(data: Any) -> str:
    """Deterministic YAML of one document."""
    try:
        node = _node(data, set())
    except (_NotPlain, RecursionError):
        return str(yaml.dump(data, Dumper=_Dumper, **_FORMAT))
    return str(yaml.serialize(node, Dumper=_Dumper, **_EMIT))


def to_yaml_stream(docs: Iterable[Any]) -> str:
    """Deterministic YAML of several documents, each starting with ``---``."""
    docs = list(docs)
    try:
        nodes = [_node(d, set()) for d in docs]
    except (_NotPlain, RecursionError):
        return str(yaml.dump_all(docs, Dumper=_Dumper, explicit_start=True, **_FORMAT))
    return str(yaml.serialize_all(nodes, Dumper=_Dumper, explicit_start=True, **_EMIT))
