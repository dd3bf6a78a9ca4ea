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


class SafeLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader with the implicit tag of each scalar memoised.

    Even libyaml's loader calls back into Python's regex-based resolver for every scalar (keys
    included), about a quarter of parsing a policy repository; the same few thousand strings
    (``name``, ``us-east-1``, ``5s``) recur in every file. The tag depends only on the text and its
    style (the safe loader has no path resolvers), so the memo cannot change a result.
    """

    _resolved: ClassVar[dict[tuple[str, Any], str]] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode or self.yaml_path_resolvers:
            return str(super().resolve(kind, value, implicit))
        key = (value, implicit)
        tag = self._resolved.get(key)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))
            if len(self._resolved) < _RESOLVED_MAX:
                self._resolved[key] = tag
        return tag


class _Dumper(_BaseDumper):  # type: ignore[misc,valid-type]
    pass


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


def to_yaml(data: Any) -> str:
    """Deterministic YAML of one document."""
    return str(yaml.dump(data, Dumper=_Dumper, **_FORMAT))


def to_yaml_stream(docs: Iterable[Any]) -> str:
    """Deterministic YAML of several documents, each starting with ``---``."""
    return str(yaml.dump_all(docs, Dumper=_Dumper, explicit_start=True, **_FORMAT))
