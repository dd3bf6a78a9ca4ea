"""``reconciler serve``: the same pass as ``reconcile``, on a schedule, in one long-lived process.

APScheduler (3.x) runs the pass on an interval or a cron expression with ``max_instances=1`` and
``coalesce`` — never two passes at once, and a missed run is not replayed many times; a lock inside
the job makes that a hard guarantee. The git cache stays warm between passes. ``/healthz``,
``/readyz`` and Prometheus ``/metrics`` are served on ``--listen-address:--port``. On SIGTERM/SIGINT
no new pass starts; the running one is given ``--shutdown-grace`` seconds to finish (releasing its
Lease); a pass still running after that is abandoned — each write it made is atomic and the Lease
expires by itself.

With ``live`` watch caches (what the ``serve`` command uses), live state is kept between passes by
LIST+WATCH (:mod:`reconciler.clusters.watch`): a no-op pass sends no LIST, and a change someone else
makes to an object we own triggers a pass within about a second (``DRIFT_DEBOUNCE``) instead of at
the next interval.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from reconciler.clusters.watch import WatchCaches
from reconciler.errors import ExitCode
from reconciler.gcpause import cyclic_gc_paused
from reconciler.logs import log_changes
from reconciler.reconcile import ReconcileOutcome, reconcile_once, unexpected_error
from reconciler.settings import Settings

log = logging.getLogger("reconciler.serve")

RESULTS: dict[int, str] = {ExitCode.OK: "converged", ExitCode.DEGRADED: "degraded"}

DRIFT_DEBOUNCE = 1.0
"""Seconds to wait after a drift event before the pass it triggers (a burst of edits -> one pass)."""


class Metrics:
    """Prometheus metrics of the worker (its own registry: nothing global, easy to test)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("mesh_reconciler_runs", "Reconcile passes by result.", ["result"], registry=r)
        self.duration = Histogram(
            "mesh_reconciler_run_duration_seconds",
            "Duration of reconcile passes.",
            registry=r,
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.objects = Counter(
            "mesh_reconciler_objects",
            "Objects by action (created, configured, pruned, ...), per cluster.",
            ["cluster", "action"],
            registry=r,
        )
        self.cluster_failures = Counter(
            "mesh_reconciler_cluster_failures",
            "Passes in which a cluster was unreachable or rejected objects.",
            ["cluster"],
            registry=r,
        )
        self.last_success = Gauge(
            "mesh_reconciler_last_success_timestamp_seconds",
            "Unix time of the last pass that was not fatal.",
            registry=r,
        )
        self.policies = Gauge(
            "mesh_reconciler_policies", "Policies by status state after the last pass.", ["state"], registry=r
        )
        self.in_progress = Gauge("mesh_reconciler_run_in_progress", "1 while a pass runs.", registry=r)
        self.max_concurrent = Gauge(
            "mesh_reconciler_max_concurrent_runs",
            "Most passes ever seen running at once (must stay 1).",
            registry=r,
        )

    def record(self, outcome: ReconcileOutcome) -> None:
        self.runs.labels(RESULTS.get(outcome.exit_code, "fatal")).inc()
        self.duration.observe(outcome.seconds)
        if outcome.result is not None:
            for change in outcome.result.changes.all():
                self.objects.labels(change.cluster, change.action.value).inc()
            for name, result in outcome.result.changes.clusters.items():
                if not result.reachable or any(c.action.is_error for c in result.changes):
                    self.cluster_failures.labels(name).inc()
        if not outcome.fatal:
            self.last_success.set(time.time())
            states: dict[str, int] = {"ACCEPTED": 0, "INVALID": 0, "FAILED": 0, "PENDING": 0}
            for doc in outcome.status.values():
                state = str(doc.get("status", {}).get("state", "PENDING"))
                states[state] = states.get(state, 0) + 1
            for state, count in states.items():
                self.policies.labels(state).set(count)


@dataclass
class Worker:
    settings: Settings
    run: Callable[..., ReconcileOutcome] = reconcile_once
    """Called as ``run(settings, cancel)``, plus ``live=`` when the worker keeps watch caches."""
    live: WatchCaches | None = None
    """Watch caches kept across passes (created once, by the ``serve`` command)."""
    metrics: Metrics = field(default_factory=Metrics)
    last: ReconcileOutcome | None = None
    passes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _running: int = 0
    _max_running: int = 0
    _counter_lock: threading.Lock = field(default_factory=threading.Lock)
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set when shutdown gives up waiting: the running pass stops writing and is not a success."""
    abandoned: int = 0
    drift: threading.Event = field(default_factory=threading.Event)
    """Set when a watch saw someone else change an object we own: a pass is due now."""

    def __post_init__(self) -> None:
        if self.live is not None:
            self.live.on_drift = self.drift_seen

    def drift_seen(self, cluster: str, event_type: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        log.info(
            "drift in %s: %s %s %s/%s; a pass follows",
            cluster,
            event_type.lower(),
            obj.get("kind"),
            meta.get("namespace"),
            meta.get("name"),
        )
        self.drift.set()

    def run_pass(self) -> None:
        if not self._lock.acquire(blocking=False):
            log.warning("previous pass still running; skipping this one")
            return
        try:
            with self._counter_lock:
                self._running += 1
                self._max_running = max(self._max_running, self._running)
                self.metrics.max_concurrent.set(self._max_running)
            self.metrics.in_progress.set(1)
            with cyclic_gc_paused():  # as for a one-shot command (commands/app.py); on again between passes
                if self.live is not None:
                    outcome = self.run(self.settings, self.cancel, live=self.live)
                else:
                    outcome = self.run(self.settings, self.cancel)
            self.passes += 1
            if self.cancel.is_set() and not outcome.fatal:
                outcome.exit_code = ExitCode.FATAL
                outcome.error = outcome.error or "pass abandoned at shutdown"
            self.last = outcome
            self.metrics.record(outcome)
            if outcome.result is not None:
                log_changes(outcome.result.changes)
            level = logging.ERROR if outcome.fatal else logging.INFO
            log.log(
                level,
                "pass %d finished: %s in %.1fs%s",
                self.passes,
                RESULTS.get(outcome.exit_code, "fatal"),
                outcome.seconds,
                f" ({outcome.error})" if outcome.error else "",
                extra={"data": {"exitCode": outcome.exit_code, "seconds": round(outcome.seconds, 3)}},
            )
        except Exception as exc:  # a pass must never kill the worker (reconcile_once already catches)
            log.error("pass crashed: %s", unexpected_error(exc))
            log.debug("traceback", exc_info=True)
            self.metrics.runs.labels("fatal").inc()
        finally:
            with self._counter_lock:
                self._running -= 1
            self.metrics.in_progress.set(0)
            self._lock.release()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def ready(self) -> tuple[bool, str]:
        if self.last is None:
            return False, "no pass finished yet"
        if self.last.fatal:
            return False, f"last pass failed: {self.last.error}"
        return True, "ok"


def make_handler(worker: Worker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok, why = worker.ready()
                self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
            elif self.path == "/metrics":
                self._send(200, generate_latest(worker.metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def trigger(interval: float | None, cron: str | None) -> IntervalTrigger | CronTrigger:
    if cron:
        try:
            return CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise ValueError(f"invalid --cron {cron!r}: {exc}") from None
    if not interval or interval <= 0:
        raise ValueError("set --interval (e.g. 5m) or --cron (e.g. '*/5 * * * *')")
    return IntervalTrigger(seconds=interval)


def serve(
    worker: Worker,
    *,
    interval: float | None,
    cron: str | None,
    address: str = "127.0.0.1",
    port: int = 9090,
    shutdown_grace: float = 60.0,
    stop: threading.Event | None = None,
) -> int:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); returns the process exit code: 0, or 1 when a pass had to be abandoned."""
    stop = stop or threading.Event()
    # A long-running worker must collect cycles between passes (the CLI pauses the collector for
    # the one command it runs); Worker.run_pass pauses it again for each pass.
    gc.enable()
    when = trigger(interval, cron)
    httpd = ThreadingHTTPServer((address, port), make_handler(worker))
    http_thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    http_thread.start()
    scheduler = BackgroundScheduler(
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    )
    scheduler.add_job(worker.run_pass, when, id="reconcile", next_run_time=_now(scheduler))
    scheduler.start()
    log.info(
        "serving /healthz /readyz /metrics on %s:%d; schedule: %s",
        address,
        httpd.server_address[1],
        cron or f"every {interval:g}s",
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("received signal %d: finishing", signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    drift_thread = threading.Thread(target=_on_drift, args=(worker, stop), name="drift", daemon=True)
    if worker.live is not None:
        drift_thread.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scheduler.shutdown(wait=False)  # no new pass
        deadline = time.monotonic() + shutdown_grace
        while worker.busy and time.monotonic() < deadline:
            time.sleep(0.1)
        if worker.busy:
            log.error(
                "a pass is still running after %.0fs; abandoning it: it stops writing now, is not "
                "reported as a success, and its Lease expires by itself",
                shutdown_grace,
            )
            worker.cancel.set()
            worker.abandoned += 1
            worker.metrics.runs.labels("abandoned").inc()
        if worker.live is not None:
            drift_thread.join(timeout=5)
            worker.live.stop()
        httpd.shutdown()
        httpd.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped after %d pass(es)", worker.passes)
    return 1 if worker.abandoned else 0


def _on_drift(worker: Worker, stop: threading.Event, debounce: float = DRIFT_DEBOUNCE) -> None:
    """Run a pass soon after drift: debounced, and after the running pass (never two at once).

    The flag is cleared *before* the pass plans, so drift seen while it runs causes one more pass.
    """
    while not stop.is_set():
        if not worker.drift.wait(0.5):
            continue
        if stop.wait(debounce):
            return
        while worker.busy:
            if stop.wait(0.1):
                return
        worker.drift.clear()
        worker.run_pass()  # if a scheduled pass won the lock meanwhile, that pass sees the drift


def _now(scheduler: BackgroundScheduler) -> Any:
    from datetime import datetime

    return datetime.now(scheduler.timezone)
