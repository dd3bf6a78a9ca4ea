"""Human and machine output shared by every command (rich for people, JSON/YAML for tools)."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console
from rich.markup import escape

from reconciler.findings import Finding, Severity

if TYPE_CHECKING:
    from reconciler.explain import Explanation


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


def print_explanation(console: Console, result: Explanation, failed: Iterable[str]) -> None:
    """Human view of :class:`reconciler.explain.Explanation`: one block per priority level."""
    vd = result.virtual_destination
    failed = list(failed)
    console.print(
        f"[bold]{escape(result.hostname)}[/bold] (VirtualDestination {vd.namespace}/{vd.name}) "
        f"for a client in [bold]{escape(result.client.path)}[/bold] (cluster {escape(result.cluster)})"
    )
    dr = result.destination_rule.body["spec"]["trafficPolicy"]
    od = dr.get("outlierDetection", {})
    lb = dr.get("loadBalancer", {}).get("localityLbSetting", {})
    extra = ""
    if lb.get("failover"):
        extra = "; failover " + ", ".join(f"{r['from']}->{r['to']}" for r in lb["failover"])
    if lb.get("failoverPriority"):
        extra = f"; failoverPriority over {len(lb['failoverPriority'])} labels"
    console.print(
        escape(
            f"DestinationRule {result.destination_rule.namespace}/{result.destination_rule.name}: "
            f"outlierDetection consecutive5xxErrors={od.get('consecutive5xxErrors')} interval={od.get('interval')} "
            f"baseEjectionTime={od.get('baseEjectionTime')} maxEjectionPercent={od.get('maxEjectionPercent')}{extra}"
        )
    )
    if failed:
        console.print(escape(f"ejected: endpoints in {', '.join(failed)}"))
    console.print()
    for level, endpoints in enumerate(result.priorities):
        share = result.shares[level] if level < len(result.shares) else 0.0
        note = "" if level == 0 else "  (used as higher priorities become unhealthy)" if share == 0 else ""
        console.print(f"[bold]priority {level}[/bold]  {share:.0f}% of requests{note}")
        for e in endpoints:
            mark = "[red]ejected[/red] " if e.ejected else ""
            console.print(
                f"  {mark}{escape(f'{e.address}:{e.port}'):<22} {escape(e.cluster):<16} "
                f"{escape(str(e.locality) if e.locality else '-'):<24} {escape(e.reason)}"
            )
    if result.shares and sum(result.shares) == 0:
        console.print("[red]every endpoint is ejected: clients get 503 (no healthy upstream)[/red]")
