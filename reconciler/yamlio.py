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
from typing import Any

import yaml

SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


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
