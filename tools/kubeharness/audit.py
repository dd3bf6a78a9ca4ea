"""Reading the kube-apiserver audit log (JSON lines, one ``audit.k8s.io/v1`` Event per line).

Every request is logged at level ``Metadata`` with the ``RequestReceived`` stage omitted, so each
finished request yields exactly one ``ResponseComplete`` event (long-running WATCHes additionally
yield ``ResponseStarted``). The log is a server-side record of what a client really sent, which is
what tests use to count API requests (e.g. "the second reconcile issued no writes").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class AuditMark:
    """A position in one API server's audit log; events after it are "new"."""

    offset: int


@dataclass(frozen=True)
class AuditRequest:
    """The interesting parts of one audit event."""

    verb: str
    resource: str | None
    namespace: str | None
    name: str | None
    dry_run: bool
    user: str
    code: int | None
    api_group: str | None = None
    subresource: str | None = None
    request_uri: str = ""
    stage: str = ""

    @property
    def is_write(self) -> bool:
        """A mutating request that was not a dry run."""
        return self.verb in WRITE_VERBS and not self.dry_run

    def short(self) -> str:
        """E.g. ``patch destinationrules ns/name (dryRun)``."""
        res = self.resource or self.request_uri
        if self.subresource:
            res += f"/{self.subresource}"
        target = "/".join(p for p in (self.namespace, self.name) if p)
        text = f"{self.verb} {res}" + (f" {target}" if target else "")
        return text + (" (dryRun)" if self.dry_run else "")


def read_events(path: Path, since: AuditMark | None = None) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines after ``since``; returns the events and the offset after the last one."""
    start = since.offset if since is not None else 0
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0
    if size < start:  # rotated or truncated: read everything there is
        start = 0
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    end = data.rfind(b"\n") + 1  # ignore a partially written last line
    events: list[dict[str, Any]] = []
    for line in data[:end].splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events, start + end


def is_dry_run(event: dict[str, Any]) -> bool:
    """Whether the request carried ``dryRun`` (it shows only in the request URI's query string)."""
    query = parse_qs(urlsplit(str(event.get("requestURI", ""))).query)
    return bool(query.get("dryRun"))


def summarize_event(event: dict[str, Any]) -> AuditRequest:
    ref: dict[str, Any] = event.get("objectRef") or {}
    status: dict[str, Any] = event.get("responseStatus") or {}
    code = status.get("code")
    return AuditRequest(
        verb=str(event.get("verb", "")),
        resource=ref.get("resource"),
        namespace=ref.get("namespace"),
        name=ref.get("name"),
        dry_run=is_dry_run(event),
        user=str((event.get("user") or {}).get("username", "")),
        code=int(code) if code is not None else None,
        api_group=ref.get("apiGroup"),
        subresource=ref.get("subresource"),
        request_uri=str(event.get("requestURI", "")),
        stage=str(event.get("stage", "")),
    )


def summarize(events: Iterable[dict[str, Any]]) -> list[AuditRequest]:
    """One :class:`AuditRequest` per event, in log order."""
    return [summarize_event(e) for e in events]
