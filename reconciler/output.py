"""Human and machine output shared by every command (rich for people, JSON/YAML for tools)."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterable
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from reconciler.findings import Finding, Severity


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def dump_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def to_yaml(data: Any) -> str:
    """Deterministic YAML (sorted keys, block style) so the same input is byte-identical output."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, allow_unicode=True, width=100
    )


def to_yaml_stream(docs: Iterable[Any]) -> str:
    return yaml.dump_all(
        docs,
        Dumper=_Dumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
        explicit_start=True,
    )


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    def key(f: Finding) -> tuple[Any, ...]:
        loc = f.location
        return (loc.file if loc else "", loc.line if loc else 0, loc.column if loc else 0, f.field, f.message)

    return sorted(findings, key=key)


def print_findings(console: Console, findings: Iterable[Finding]) -> None:
    for f in sort_findings(findings):
        style = "red" if f.severity is Severity.ERROR else "yellow"
        console.print(
            f"[{style}]{f.severity.value}[/{style}] {escape(f.format())}", markup=True, highlight=False
        )
