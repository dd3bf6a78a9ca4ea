"""Everything the commands print: rich for people on stdout/stderr, JSON/YAML for tools.

Commands decide *what* to say and the exit code; this module is the only one that writes to stdout
or stderr (besides logging). Errors are one line, ``error: ...``, on stderr.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import yaml

from reconciler.clusters.inventory import Inventory, unavailable
from reconciler.engine.changeset import Action, ChangeSet, ObjectChange
from reconciler.findings import Finding, Severity
from reconciler.markdown import DEFAULT_LIMIT, Markdown, code, code_block, html
from reconciler.markdown import escape as md_escape
from reconciler.yamlio import to_yaml, to_yaml_stream

__all__ = ["to_yaml", "to_yaml_stream"]  # re-exported for the commands' printing

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.dataplane.explain import Explanation
    from reconciler.policy import PolicySet
    from reconciler.reconcile import ReconcileOutcome


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    YAML = "yaml"


class ReportFormat(enum.StrEnum):
    """``impact -o``: text for people, JSON for tools, Markdown for a pull-request comment."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


class DiffFormat(enum.StrEnum):
    """``diff -o``: the formats of every command, plus a pull-request comment."""

    TEXT = "text"
    JSON = "json"
    YAML = "yaml"
    MARKDOWN = "markdown"


class BootstrapFormat(enum.StrEnum):
    """``envoy-config -o``: an Envoy bootstrap is YAML or JSON, never a text report."""

    YAML = "yaml"
    JSON = "json"


# rich is imported on first use: a pass printing JSON (a CronJob's) never needs it, and its console
# module is ~25 ms of every start-up.
def stdout_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def escape(text: str) -> str:
    """``text`` with rich markup escaped (printed as is)."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def dump_json(data: Any) -> None:
    """Indented JSON, as ``kubectl -o json`` prints it (UTF-8, keys in the order given).

    msgspec, not ``json.dumps(indent=2)``: the standard library's C encoder does not indent, and its
    pure-Python one spent 0.1 s of a no-op pass printing a change set of 6,500 objects."""
    encoded = msgspec.json.encode(data, enc_hook=str)
    _write(msgspec.json.format(encoded, indent=2).decode() + "\n")


def print_document(data: Any, fmt: OutputFormat) -> None:
    """A machine-readable document: JSON for ``-o json``, YAML otherwise."""
    if fmt is OutputFormat.JSON:
        dump_json(data)
    else:
        _write(to_yaml(data))


def print_error(message: str) -> None:
    """The one line an expected failure prints (the command then exits 2, or 1 when degraded)."""
    stderr_console().print(f"error: {message}", markup=False)


def print_version(version: str) -> None:
    _write(f"reconciler {version}\n")


def print_written(path: Path, objects: int | None = None) -> None:
    stdout_console().print(f"wrote {path}" + (f" ({objects} objects)" if objects is not None else ""))


# --------------------------------------------------------------------------------------------------
# findings and clusters


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


def print_cluster_problems(inventory: Inventory) -> int:
    """Unreachable clusters and cluster notes, on stderr; returns how many clusters failed."""
    err = stderr_console()
    failed = 0
    for name, state in sorted(inventory.clusters.items()):
        if state.error:
            failed += 1
            err.print(f"error: {unavailable(name, state.error)} (context {state.context})", markup=False)
        for note in state.notes:
            err.print(f"warning: cluster {name}: {note}", markup=False)
    return failed


# --------------------------------------------------------------------------------------------------
# validate / render


def print_validation(policies: PolicySet, findings: Sequence[Finding], fmt: OutputFormat) -> None:
    """``validate``: every finding and a one-line verdict, or the whole report as JSON/YAML."""
    errors = [f for f in findings if f.is_error]
    warnings = [f for f in findings if not f.is_error]
    if fmt is OutputFormat.TEXT:
        out = stdout_console()
        print_findings(out, findings)
        by_kind: dict[str, int] = {}
        for p in policies.policies:
            by_kind[p.obj.kind] = by_kind.get(p.obj.kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())) or "no policies"
        verdict = "valid" if not errors else "INVALID"
        out.print(
            f"{verdict}: {counts} valid; {len(policies.invalid)} invalid; "
            f"{len(errors)} error(s), {len(warnings)} warning(s)"
        )
        return
    report = {
        "valid": not errors,
        "policies": [
            {
                "kind": p.obj.kind,
                "namespace": p.obj.namespace,
                "name": p.obj.name,
                "file": p.location.file,
                "line": p.location.line,
            }
            for p in sorted(policies.policies, key=lambda p: p.key)
        ],
        "invalid": [
            {"kind": k.kind, "namespace": k.namespace, "name": k.name, "file": loc.file, "line": loc.line}
            for k, loc in sorted(policies.invalid.items())
        ],
        "findings": [f.to_dict() for f in sort_findings(findings)],
    }
    print_document(report, fmt)


def print_rendered(groups: Mapping[str, Sequence[Mapping[str, Any]]], fmt: OutputFormat) -> None:
    """``render``: the objects of each cluster, as a YAML stream per cluster (or one JSON document)."""
    if fmt is OutputFormat.JSON:
        dump_json({"clusters": groups})
        return
    chunks = []
    for name, bodies in groups.items():
        chunks.append(f"# ---- cluster: {name} ({len(bodies)} objects)\n")
        chunks.append(to_yaml_stream(bodies) if bodies else "")
    _write("".join(chunks))


# --------------------------------------------------------------------------------------------------
# explain / envoy-config


def print_explain(result: Explanation, failed: Sequence[str], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.TEXT:
        print_explanation(stdout_console(), result, failed)
    else:
        print_document(result.to_dict(), fmt)


def print_explanation(console: Console, result: Explanation, failed: Iterable[str]) -> None:
    """Human view of :class:`reconciler.dataplane.explain.Explanation`: one block per priority level."""
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
    if result.istio is not None:
        console.print(escape(f"istiod in {result.cluster}: {result.istio.describe()}"))
        if result.istio.warning:
            console.print(f"[yellow]warning:[/yellow] {escape(result.istio.warning)}")
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


def print_bootstrap(result: Explanation, bootstrap: Mapping[str, Any], fmt: BootstrapFormat) -> None:
    """``envoy-config``: the bootstrap as JSON, or as YAML under a comment saying what it is."""
    if fmt is BootstrapFormat.JSON:
        dump_json(bootstrap)
    else:
        text = yaml.safe_dump(dict(bootstrap), sort_keys=False, default_flow_style=False, width=100)
        from reconciler.dataplane.envoy import header_comment  # only envoy-config pays for it

        _write(header_comment(result) + text)


# --------------------------------------------------------------------------------------------------
# diff / reconcile

_ACTIONS = ("created", "configured", "pruned", "unchanged", "held", "conflict", "failed")


def print_changeset(
    console: Console, changes: ChangeSet, *, diffs: Container[Action] = frozenset(Action)
) -> None:
    """kubectl/flux-style human view: per cluster, a line per object that is not unchanged (with
    the unified diff of those whose action is in ``diffs``), and counts."""
    line = _line_printer(console)
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for name in sorted(changes.clusters):
        result = changes.clusters[name]
        if not result.reachable:
            line((f"cluster {name}", "bold"), ": ", ("unreachable", "red"), f": {result.error or ''}")
            continue
        counts = result.counts()
        summary = (
            ", ".join(f"{Action(a).symbol} {counts[a]} {a}" for a in _ACTIONS if counts[a]) or "no objects"
        )
        line((f"cluster {name}", "bold"), f": {summary}")
        for change in result.changes:
            if change.action is Action.UNCHANGED:
                continue
            colour = {"created": "green", "configured": "yellow", "pruned": "red"}.get(
                change.action.value, "magenta"
            )
            paths = f"  ({', '.join(change.changed_paths)})" if change.changed_paths else ""
            line("  ", (f"{change.action.symbol} {change.action.value}", colour), f" {change.ref}{paths}")
            if change.message:
                line(f"      {change.message}")
            if change.previous_managers and change.action.is_difference:
                line(f"      fields taken over from: {', '.join(change.previous_managers)}")
            diff = change.diff if change.action in diffs else ""  # rendered on each read: read once
            if diff:
                rows = diff.splitlines()
                line(
                    *(
                        (
                            f"\n      {row}" if i else f"      {row}",
                            styles.get(row[:1], "") if not row.startswith(("+++", "---")) else "bold",
                        )
                        for i, row in enumerate(rows)
                    )
                )
        for note in result.notes:
            line((f"  {note}", "red"))
    total = changes.counts()
    line(
        "total: " + ", ".join(f"{total[a]} {a}" for a in _ACTIONS) + (" (dry run)" if changes.dry_run else "")
    )
    try:  # rich flushes after each line; the plain lines are flushed here, before any log line
        console.file.flush()
    except BrokenPipeError:
        console.on_broken_pipe()


_Part = str | tuple[str, str]
"""A piece of a printed line: text, or (text, rich style)."""


def _line_printer(console: Console) -> Callable[..., None]:
    """How :func:`print_changeset` prints a line made of :data:`_Part` pieces: through rich when it
    has something to add, else as plain text straight to the console's file.

    A first sync's change set is a quarter of a million diff lines at K=1000, and rich renders one
    in ~0.07 ms: 20 s of CPU for a CronJob's log, where rich adds nothing (not a terminal, so no
    colours). The plain text is what rich would print there — control codes stripped, tabs
    expanded, flushed at the end — except that ``:emoji_codes:`` inside a value stay as written.
    Plain only for a console like :func:`stdout_console`'s: no colours, not recording, not quiet,
    soft-wrapped (and never inside ``console.capture()``, which would not see these writes).
    """
    if console.color_system is not None or console.record or console.quiet or not console.soft_wrap:
        from rich.text import Text

        def styled(*parts: _Part) -> None:
            console.print(Text.assemble(*parts))

        return styled
    from rich.control import strip_control_codes

    file = console.file

    def plain(*parts: _Part) -> None:
        text = "".join(p if isinstance(p, str) else p[0] for p in parts)
        try:
            file.write(strip_control_codes(text).expandtabs(console.tab_size) + "\n")
        except BrokenPipeError:  # `| head`: stop quietly, as rich does
            console.on_broken_pipe()

    return plain


def print_diff(changes: ChangeSet, fmt: OutputFormat | DiffFormat) -> None:
    """``diff``: the change set for people (``-o text``), a pull-request comment (``-o markdown``),
    else as a JSON or YAML document."""
    if fmt == DiffFormat.MARKDOWN:
        _write(render_diff_markdown(changes))
    elif fmt == OutputFormat.TEXT:
        print_changeset(stdout_console(), changes)
    else:
        print_document(changes.to_dict(), OutputFormat(fmt.value))


def render_diff_markdown(changes: ChangeSet, limit: int = DEFAULT_LIMIT) -> str:
    """``diff -o markdown``: a summary table, then one collapsible section per cluster with each
    differing object and its diff (unchanged objects are counted, not listed)."""
    total = changes.counts()
    differences = sum(total[a.value] for a in Action if a.is_difference)
    errors = sum(total[a.value] for a in Action if a.is_error)
    verdict = "no differences" if not differences else f"{differences} object(s) differ"
    md = Markdown()
    md.heading(3, f"mesh-reconciler diff: {verdict}" + (f", {errors} error(s)" if errors else ""))
    md.table(
        ["cluster", *_ACTIONS],
        [
            [code(name), *(str(changes.clusters[name].counts()[a]) for a in _ACTIONS)]
            if changes.clusters[name].reachable
            else [code(name), *(["unreachable"] + ["—"] * (len(_ACTIONS) - 1))]
            for name in sorted(changes.clusters)
        ],
    )
    for name in sorted(changes.clusters):
        result = changes.clusters[name]
        if not result.reachable:
            md.paragraph(
                f"> [!WARNING]\n> cluster {code(name)} is unreachable: {md_escape(result.error or '')}"
            )
            continue
        shown = [c for c in result.changes if c.action is not Action.UNCHANGED]
        if not shown and not result.notes:
            continue
        counts = result.counts()
        summary = ", ".join(
            f"{Action(a).symbol} {counts[a]} {a}" for a in _ACTIONS if counts[a] and a != "unchanged"
        )
        items = [_diff_item(c) for c in shown] + [f"- {md_escape(note)}\n" for note in result.notes]
        md.details(f"{html(name)}: {html(summary or 'notes')}", items)
    return md.render(limit, hint="Run `reconciler diff -o json` for the whole change set.")


def _diff_item(change: ObjectChange) -> str:
    line = f"- {code(f'{change.action.symbol} {change.action.value}')} {code(change.ref)}"
    if change.changed_paths:
        line += " — " + ", ".join(code(p) for p in change.changed_paths)
    if change.message:
        line += f"<br>{md_escape(change.message)}"
    diff = change.diff
    if not diff:
        return line + "\n"
    block = code_block(diff, "diff")
    return line + "\n\n" + "".join(f"  {ln}\n" if ln else "\n" for ln in block.splitlines()) + "\n"


RECONCILE_DIFFS = frozenset({Action.CONFIGURE})
"""The changes ``reconcile`` prints a diff for: a configured object's says what was repaired. A
created or pruned object's diff is the whole object (in Git, or gone), so it gets its line only, as
in ``kubectl apply`` or Flux's change set: a first sync at K=1000 printed ~250,000 diff lines into a
CronJob's log. ``diff`` shows every diff."""


def print_reconcile(outcome: ReconcileOutcome, fmt: OutputFormat) -> None:
    """``reconcile``: the change set and what happened to the status (nothing when no pass ran)."""
    if outcome.result is None:
        return
    checkout = outcome.checkout
    if fmt is not OutputFormat.TEXT:
        payload = outcome.result.changes.to_dict()
        payload["commit"] = checkout.sha if checkout else None
        payload["policyCommit"] = checkout.policy_commit if checkout else None
        payload["statusCommit"] = outcome.status_commit
        payload["exitCode"] = int(outcome.exit_code)
        if outcome.result.shard is not None:
            payload["shard"] = str(outcome.result.shard)
            payload["ownedClusters"] = list(outcome.result.owned or [])
        print_document(payload, fmt)
        return
    out = stdout_console()
    if outcome.result.shard is not None:
        owned, fleet = outcome.result.owned or [], outcome.result.plan.inventory.clusters
        out.print(
            f"shard {outcome.result.shard}: writes {len(owned)} of {len(fleet)} clusters "
            f"({', '.join(owned) or 'none'}); the others were only read"
        )
    print_changeset(out, outcome.result.changes, diffs=RECONCILE_DIFFS)
    if outcome.status_commit:
        out.print(f"status committed: {outcome.status_commit[:12]}")
    elif outcome.status_changed:
        out.print(f"status written to {checkout.path if checkout else '?'} (not committed)")
    else:
        out.print("status unchanged: no commit")
