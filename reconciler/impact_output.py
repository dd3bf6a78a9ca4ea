"""How ``impact`` reads: plain text for a terminal, Markdown for a pull-request comment, JSON for tools.

Kept beside :mod:`reconciler.output` (which prints everything else) because the two views of one
report are long; the Markdown building blocks are :mod:`reconciler.markdown`, shared with
``diff -o markdown``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.impact import (
    ImpactReport,
    ObjectAction,
    ObjectImpact,
    PolicyChange,
    Route,
    RouteChange,
    RouteChangeKind,
    summarize_levels,
)
from reconciler.markdown import DEFAULT_LIMIT, Markdown, cell, code, code_block, escape, html
from reconciler.output import ReportFormat, dump_json

ARROW = " → "
MAX_PATHS = 4
"""Changed paths named per object; the rest are counted."""
MAX_UNCHANGED_LINES = 5
"""Unchanged client localities of a hostname shown with their order (more: named on one line)."""
MAX_DIFF_LINES = 80
"""Lines of one object's diff in a Markdown comment (the JSON report and ``diff`` have all)."""


def print_impact(report: ImpactReport, fmt: ReportFormat, *, limit: int = DEFAULT_LIMIT) -> None:
    if fmt is ReportFormat.JSON:
        dump_json(report.to_dict())
        return
    text = render_markdown(report, limit) if fmt is ReportFormat.MARKDOWN else render_text(report)
    sys.stdout.write(text)
    sys.stdout.flush()


def verdict(report: ImpactReport) -> str:
    if report.incomplete:
        return "incomplete: some cluster could not be read"
    return "traffic changes" if report.traffic_changed else "no traffic change"


# --------------------------------------------------------------------------------------------------
# describing routes


def order(route: Route | None) -> str:
    if route is None:
        return "not routed"
    if not route.priorities:
        return "no endpoint"
    return ARROW.join(summarize_levels(route.priorities))


def _od_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    if before is None or after is None:
        return "outlier detection " + ("removed" if after is None else "added")
    keys = sorted(set(before) | set(after))
    parts = [
        f"{k} {before.get(k, '-')}{ARROW}{after.get(k, '-')}" for k in keys if before.get(k) != after.get(k)
    ]
    return "outlier detection " + ", ".join(parts)


def describe(change: RouteChange) -> str:
    """What changed for one client, in a few words."""
    words = []
    for kind in change.changes:
        if kind is RouteChangeKind.ADDED:
            words.append("newly routed")
        elif kind is RouteChangeKind.REMOVED:
            words.append("no longer routed")
        elif kind is RouteChangeKind.ORDER:
            words.append("failover order changed")
        elif kind is RouteChangeKind.OUTLIER_DETECTION:
            b, a = change.before, change.after
            words.append(_od_changes(b.outlier_detection if b else None, a.outlier_detection if a else None))
        elif kind is RouteChangeKind.LOCALITY_LB:
            on = change.after is not None and change.after.locality_lb
            words.append("locality load balancing " + ("on" if on else "off"))
    return "; ".join(words) or "unchanged"


def _vd_names(changes: list[RouteChange]) -> str:
    keys = sorted(
        {r.virtual_destination for c in changes for r in (c.before, c.after) if r is not None},
    )
    return ", ".join(f"VirtualDestination {k.namespace}/{k.name}" for k in keys)


def _by_hostname(report: ImpactReport) -> dict[str, list[RouteChange]]:
    out: dict[str, list[RouteChange]] = {}
    for r in report.routes:
        out.setdefault(r.hostname, []).append(r)
    return out


def _policy_line(p: PolicyChange) -> str:
    symbol = {"added": "+", "removed": "-", "changed": "~", "state": "!"}[p.change]
    before = p.before.value if p.before else "-"
    after = p.after.value if p.after else "-"
    state = (
        after if before in (after, "-") else f"was {before}" if after == "-" else f"{before}{ARROW}{after}"
    )
    what = {"added": "added", "removed": "removed", "changed": "spec changed", "state": "state changed"}[
        p.change
    ]
    line = f"{symbol} {p.key.kind} {p.key.namespace}/{p.key.name}: {what} ({state})"
    if p.errors:
        line += ": " + "; ".join(p.errors)
    return line


def _paths(o: ObjectImpact, quote: Callable[[str], str] = str) -> str:
    if o.reason:
        return o.reason
    if not o.paths:
        return ""
    shown = ", ".join(quote(p) for p in o.paths[:MAX_PATHS])
    more = len(o.paths) - MAX_PATHS
    return shown + (f", … {more} more" if more > 0 else "")


def _counts(objs: list[ObjectImpact]) -> str:
    counts: dict[ObjectAction, int] = {}
    for o in objs:
        counts[o.action] = counts.get(o.action, 0) + 1
    return ", ".join(f"{a.symbol} {counts[a]} {a.value}" for a in ObjectAction if a in counts)


def _source_line(report: ImpactReport) -> str:
    return f"base {report.base.label}{ARROW}head {report.head.label}; live state: {report.state}"


# --------------------------------------------------------------------------------------------------
# text


def render_text(report: ImpactReport) -> str:
    lines = [f"impact: {_source_line(report)}"]
    hosts = _by_hostname(report)
    lines.append(
        f"{len(report.clients)} client localities, {len(hosts)} hostname(s): "
        + (", ".join(str(c) for c in report.clients) or "no node has locality labels")
    )
    for name, error in report.unreachable.items():
        lines.append(
            f"warning: cluster {name} could not be read ({error}); it is missing from this comparison"
        )
    lines.append("")
    lines.append("traffic")
    if not hosts:
        lines.append("  no VirtualDestination in either revision")
    for hostname, rows in hosts.items():
        lines.append(f"  {hostname} ({_vd_names(rows)})")
        same = [r for r in rows if not r.changed]
        for r in rows:
            if not r.changed:
                continue
            lines.append(f"    ~ client {r.client}: {describe(r)}")
            lines.append(f"        before: {order(r.before)}")
            if r.after is not None and r.after.held:
                lines.append(f"        after:  unchanged, live objects kept ({r.after.held})")
            else:
                lines.append(f"        after:  {order(r.after)}")
        if len(same) <= MAX_UNCHANGED_LINES:
            for r in same:
                held = f" (live objects kept: {r.after.held})" if r.after is not None and r.after.held else ""
                lines.append(f"    = client {r.client}: unchanged{held}: {order(r.after)}")
        else:
            lines.append(
                f"    = {len(same)} client localities unchanged: " + ", ".join(str(r.client) for r in same)
            )
    routing = report.routing_objects
    if routing:
        lines.append(
            f"  routing objects (VirtualServices, TrafficPolicy DestinationRules): {len(routing)} changed"
        )
    lines.append("")
    if report.risks:
        lines.append("risks")
        for risk in report.risks:
            tag = "RISK" if risk.new else "risk (already before this change)"
            lines.append(f"  {tag} [{risk.kind.value}] {risk.message}")
    else:
        lines.append("risks: none")
    if report.new_findings:
        lines.append("new errors in head")
        lines.extend(f"  {f}" for f in report.new_findings)
    if report.policies:
        lines.append("policies")
        lines.extend(f"  {_policy_line(p)}" for p in report.policies)
    else:
        lines.append("policies: unchanged")
    if report.objects:
        lines.append("objects")
        for cluster, objs in sorted(report.objects.items()):
            lines.append(f"  cluster {cluster}: {_counts(objs)}")
            for o in objs:
                detail = _paths(o)
                lines.append(
                    f"    {o.action.symbol} {o.action.value} {o.ref}" + (f"  ({detail})" if detail else "")
                )
    else:
        lines.append("objects: unchanged")
    lines.append(f"result: {verdict(report)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# markdown


def render_markdown(report: ImpactReport, limit: int = DEFAULT_LIMIT) -> str:
    md = Markdown()
    md.heading(3, f"mesh-reconciler impact: {verdict(report)}")
    hosts = _by_hostname(report)
    counts = report.object_counts()
    md.paragraph(
        f"base {code(report.base.ref)}"
        + (f" ({code(report.base.commit[:12])})" if report.base.commit else "")
        + f"{ARROW}head {code(report.head.ref)}"
        + (f" ({code(report.head.commit[:12])})" if report.head.commit else "")
        + f" · live state: {code(report.state)}"
        + f" · {len(report.clients)} client localities × {len(hosts)} hostname(s)"
    )
    changed_hosts = sorted({r.hostname for r in report.changed_routes})
    summary = [
        f"**{len(report.changed_routes)}** client route(s) change"
        + (f" for {', '.join(code(h) for h in changed_hosts)}" if changed_hosts else ""),
        f"**{len(report.new_risks)}** new risk(s)",
        "objects: " + (", ".join(f"{n} {a}" for a, n in counts.items() if n) or "unchanged"),
        f"policies: {len(report.policies)} changed",
    ]
    if report.routing_objects:
        summary.insert(1, f"**{len(report.routing_objects)}** routing object(s) change")
    md.paragraph(" · ".join(summary))
    for name, error in report.unreachable.items():
        md.paragraph(
            f"> [!WARNING]\n> cluster {code(name)} could not be read ({escape(error)}); it is missing here."
        )
    new_risks = report.new_risks
    if new_risks:
        md.paragraph(
            "> [!CAUTION]\n"
            + "\n".join(f"> **{escape(r.kind.value)}**: {escape(r.message)}  " for r in new_risks)
        )
    if report.new_findings:
        md.details(
            f"⛔ {len(report.new_findings)} new error(s) in head",
            [f"- {code(f)}\n" for f in report.new_findings],
            open_=True,
        )
    if report.routes:
        md.heading(4, "Failover order by client locality")
        rows = sorted(report.routes, key=lambda r: (not r.changed, r.hostname, r.client))
        md.table(
            ["hostname", "client locality", "before", "after", "change"],
            [
                [
                    code(r.hostname),
                    cell(str(r.client)),
                    cell(order(r.before)),
                    _after_cell(r),
                    cell(describe(r)) if r.changed else "—",
                ]
                for r in rows
            ],
        )
    old_risks = [r for r in report.risks if not r.new]
    if old_risks:
        md.details(
            f"{len(old_risks)} risk(s) already present before this change",
            [f"- **{escape(r.kind.value)}**: {escape(r.message)}\n" for r in old_risks],
        )
    if report.policies:
        md.heading(4, "Policies")
        md.table(
            ["policy", "change", "state", "errors"],
            [
                [
                    code(f"{p.key.kind} {p.key.namespace}/{p.key.name}"),
                    p.change,
                    _state(p),
                    cell("; ".join(p.errors)) if p.errors else "",
                ]
                for p in report.policies
            ],
        )
    if report.objects:
        md.heading(4, "Objects by cluster")
        for cluster, objs in sorted(report.objects.items()):
            md.details(f"{html(cluster)}: {html(_counts(objs))}", [_object_item(o) for o in objs])
    return md.render(limit, hint="Run `reconciler impact -o json` for the whole report.")


def _after_cell(r: RouteChange) -> str:
    if r.after is not None and r.after.held:
        return cell(f"unchanged (live objects kept: {r.after.held})")
    if not r.changed:
        return "unchanged"
    return f"**{cell(order(r.after))}**"


def _state(p: PolicyChange) -> str:
    before = p.before.value if p.before else "—"
    after = p.after.value if p.after else "—"
    return after if before == after else f"{before}{ARROW}{after}"


def _object_item(o: ObjectImpact) -> str:
    detail = escape(o.reason) if o.reason else _paths(o, code)
    line = f"- {code(f'{o.action.symbol} {o.action.value}')} {code(o.ref)}" + (
        f" — {detail}" if detail else ""
    )
    diff = o.diff()
    if not diff:
        return line + "\n"
    lines = diff.splitlines()
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"… {len(lines) - MAX_DIFF_LINES} more lines"]
    body = code_block("\n".join(lines), "diff")
    return line + "\n\n" + "".join(f"  {ln}\n" if ln else "\n" for ln in body.splitlines()) + "\n"
