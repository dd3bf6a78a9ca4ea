"""One applying run at a time: a ``coordination.k8s.io/v1`` Lease in the management cluster.

The lease is taken (created, or taken over when its holder let it expire), renewed from a
background thread while the run applies, and released at the end. Updates carry the
``resourceVersion`` they read, so two runs racing for an expired lease cannot both win: the API
server rejects the second write with a conflict. Dry runs and ``diff`` never take it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from reconciler.clusters.kube import LEASES, KubeClient, KubeError
from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)


LEASE_NAME = "mesh-reconciler"
LEASE_NAMESPACE = "mesh-reconciler"
LEASE_SECONDS = 60
"""Defaults of the run Lease (settings, CLI and the Lease itself all take them from here)."""


@dataclass
class LeaseSettings:
    name: str = LEASE_NAME
    namespace: str = LEASE_NAMESPACE
    duration: int = LEASE_SECONDS
    cluster: str | None = None
    """Cluster holding the Lease; default: reconciler.yaml's managementCluster, else the first cluster."""


class LeaseHeld(ReconcilerError):
    """Another run holds the lease (the message names the holder and when it expires)."""


class LeaseError(ReconcilerError):
    """The lease could not be read or written (e.g. the management cluster is unreachable)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _format(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class RunLease:
    def __init__(
        self,
        client: KubeClient,
        *,
        name: str = LEASE_NAME,
        namespace: str = LEASE_NAMESPACE,
        duration: int = LEASE_SECONDS,
        identity: str | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.duration = duration
        self.identity = identity or default_identity()
        self.clock = clock
        self._current: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.release_error: str | None = None
        self.lost = threading.Event()
        """Set when a renewal found the lease taken by someone else, or could not renew it before it
        expired (another run may then take it): the run must stop writing."""
        self._renewed_at = 0.0

    # -- acquire / renew / release -----------------------------------------------------------------

    def acquire(self) -> None:
        try:
            live = self.client.get(LEASES, self.name, self.namespace)
        except KubeError as exc:
            raise LeaseError(f"cannot read Lease {self.namespace}/{self.name}: {exc}") from None
        now = self.clock()
        if live is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, transitions=0, acquired=now),
            }
            try:
                self._current = self.client.create(LEASES, body)
            except KubeError as exc:
                if exc.status == 409:
                    raise LeaseHeld(
                        f"Lease {self.namespace}/{self.name} was just taken by another run"
                    ) from None
                raise LeaseError(f"cannot create Lease {self.namespace}/{self.name}: {exc}") from None
            self._renewed_at = time.monotonic()
            return
        spec = live.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.duration)
        expires = renewed + timedelta(seconds=duration) if renewed else None
        if holder and holder != self.identity and expires is not None and expires > now:
            raise LeaseHeld(
                f"another run ({holder}) holds Lease {self.namespace}/{self.name} until {_format(expires)}; "
                "it will be retried on the next schedule"
            )
        transitions = int(spec.get("leaseTransitions") or 0) + (
            1 if holder and holder != self.identity else 0
        )
        live["spec"] = self._spec(now, transitions=transitions, acquired=now)
        try:
            self._current = self.client.replace(LEASES, live)
        except KubeError as exc:
            if exc.status == 409:
                raise LeaseHeld(f"Lease {self.namespace}/{self.name} was just taken by another run") from None
            raise LeaseError(f"cannot take over Lease {self.namespace}/{self.name}: {exc}") from None
        self._renewed_at = time.monotonic()
        if holder and holder != self.identity:
            log.warning("took over expired Lease %s/%s from %s", self.namespace, self.name, holder)

    def _spec(self, now: datetime, *, transitions: int, acquired: datetime) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration,
            "acquireTime": _format(acquired),
            "renewTime": _format(now),
            "leaseTransitions": transitions,
        }

    def renew(self) -> None:
        if self._current is None:
            return
        body = dict(self._current)
        spec = dict(body.get("spec") or {})
        spec["renewTime"] = _format(self.clock())
        body["spec"] = spec
        try:
            self._current = self.client.replace(LEASES, body)
            self._renewed_at = time.monotonic()
        except KubeError as exc:
            if exc.status == 409:
                self.lost.set()
                log.error("lost Lease %s/%s to another run", self.namespace, self.name)
                return
            if time.monotonic() - self._renewed_at >= self.duration:
                # Expired as far as anyone else can tell: another run may hold it by now.
                self.lost.set()
                log.error(
                    "Lease %s/%s expired without renewal (%s); stopping writes",
                    self.namespace,
                    self.name,
                    exc,
                )
                return
            log.warning("could not renew Lease %s/%s: %s", self.namespace, self.name, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._current is None or self.lost.is_set():
            return
        body = dict(self._current)
        spec = dict(body.get("spec") or {})
        spec["holderIdentity"] = None
        spec["renewTime"] = _format(self.clock())
        body["spec"] = {k: v for k, v in spec.items() if v is not None}
        try:
            self.client.replace(LEASES, body)
        except KubeError as exc:
            self.release_error = (
                f"could not release Lease {self.namespace}/{self.name} (it expires by itself): {exc}"
            )
            log.warning("%s", self.release_error)
        self._current = None

    def _renew_loop(self) -> None:
        interval = max(1.0, self.duration / 3)
        while not self._stop.wait(interval):
            self.renew()

    def __enter__(self) -> RunLease:
        self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
