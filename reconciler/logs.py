"""Logging: readable on a terminal, JSON lines elsewhere (a CronJob's log collector).

One line per cluster result and one per changed object, with structured fields (``cluster``,
``kind``, ``namespace``, ``name``, ``action``) so log queries need no regexes. Messages never carry
secrets: git errors are redacted at their source and no credential is ever logged.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from reconciler.clusters.inventory import unavailable
from reconciler.engine.changeset import Action, ChangeSet


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            out.update(data)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, sort_keys=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        return f"{ts} {record.levelname.lower():<7} {record.getMessage()}"


def setup_logging(fmt: str = "auto", level: str = "info") -> None:
    """``fmt``: auto (text on a TTY, JSON otherwise), text or json."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("urllib3", "kubernetes", "git", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_changes(changes: ChangeSet, logger: logging.Logger | None = None) -> None:
    log = logger or logging.getLogger("reconciler")
    for name in sorted(changes.clusters):
        result = changes.clusters[name]
        if not result.reachable:
            data: dict[str, Any] = {"cluster": name, "state": "unreachable"}
            log.error("%s", unavailable(name, result.error or ""), extra={"data": data})
            continue
        counts = dict(sorted(result.counts().items()))
        failed = any(c.action.is_error for c in result.changes)
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no objects"
        data = {"cluster": name, "counts": counts, "state": "failed" if failed else "ok"}
        log.info("cluster %s: %s", name, summary, extra={"data": data})
        for c in result.changes:
            if c.action is Action.UNCHANGED:
                continue
            level = logging.INFO
            if c.action.is_error:
                level = logging.ERROR
            elif c.action is Action.HELD:
                level = logging.WARNING
            data = {
                "cluster": name,
                "kind": c.kind,
                "namespace": c.namespace,
                "name": c.name,
                "action": c.action.value,
                "message": c.message,
            }
            suffix = f": {c.message}" if c.message else ""
            log.log(
                level,
                "%s %s/%s/%s in %s%s",
                c.action.value,
                c.kind,
                c.namespace,
                c.name,
                name,
                suffix,
                extra={"data": data},
            )
