"""One reconcile pass over a policy directory: plan -> (lease) -> sync -> result.

The git checkout before it and the status commit after it are the caller's (``reconcile`` and
``serve``), so this pass is the same whether policies come from a clone, a CronJob volume or a
developer's working tree.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.clusters.kube import KubeClient
from reconciler.engine.changeset import ChangeSet
from reconciler.engine.lease import RunLease
from reconciler.engine.sync import SyncOptions, sync
from reconciler.plan import ClusterSource, Connection, Plan, build_plan, connect_clusters
from reconciler.repo_config import RepoConfig, load_repo_config

log = logging.getLogger(__name__)


@dataclass
class LeaseSettings:
    name: str = "mesh-reconciler"
    namespace: str = "mesh-reconciler"
    duration: int = 60
    cluster: str | None = None
    """Cluster holding the Lease; default: reconciler.yaml's managementCluster, else the first cluster."""


@dataclass
class PassResult:
    plan: Plan
    changes: ChangeSet
    seconds: float
    lease_cluster: str | None = None
    errors: list[str] = field(default_factory=list)
    """Run-level problems outside any cluster's change set (e.g. the Lease could not be released)."""

    @property
    def invalid(self) -> bool:
        return any(f.is_error for f in self.plan.findings)

    @property
    def failed_clusters(self) -> list[str]:
        return sorted(n for n, r in self.changes.clusters.items() if not r.reachable)

    @property
    def converged(self) -> bool:
        return not self.invalid and not self.changes.has_errors and not self.errors


class LeaseUnavailable(Exception):
    """The run lease cannot be checked (management cluster unknown or its credentials unusable)."""


def lease_client(connection: Connection, repo: RepoConfig, settings: LeaseSettings) -> tuple[str, KubeClient]:
    clients = connection.clients
    name = settings.cluster or repo.management_cluster or (sorted(clients)[0] if clients else None)
    if name is not None and name in connection.errors:
        raise LeaseUnavailable(
            f"management cluster {name} is unreachable, so the run lease cannot be taken: {connection.errors[name]}"
        )
    if name is None or name not in clients:
        raise LeaseUnavailable(f"management cluster {name or '(none)'} is not among the clusters of this run")
    return name, clients[name]


def run_pass(
    root: Path,
    source: ClusterSource,
    options: SyncOptions,
    lease: LeaseSettings | None = None,
    cancel: threading.Event | None = None,
) -> PassResult:
    """Plan and sync once. With ``options.apply`` and not ``dry_run``, hold the Lease while writing.

    A writing pass takes the Lease *first* and only then lists live state, so it can never apply a
    plan made before another run's writes. Writing stops at once (remaining objects are held) when
    the Lease is lost or ``cancel`` is set (a ``serve`` worker shutting down).
    """
    start = time.monotonic()
    if not options.apply or options.dry_run:
        plan = build_plan(root, source)
        return PassResult(plan, sync(plan, plan.clients, options), time.monotonic() - start)
    lease = lease or LeaseSettings()
    repo, _ = load_repo_config(root)
    connection = connect_clusters(source, repo)
    try:
        cluster, client = lease_client(connection, repo, lease)
        run_lease = RunLease(client, name=lease.name, namespace=lease.namespace, duration=lease.duration)
        with run_lease:

            def stop_reason() -> str:
                if run_lease.lost.is_set():
                    return "the run Lease was lost to another run"
                if cancel is not None and cancel.is_set():
                    return "the worker is shutting down"
                return ""

            plan = build_plan(root, source, connection)
            changes = sync(plan, plan.clients, options, stop=stop_reason)
    except BaseException:
        connection.close()
        raise
    result = PassResult(plan, changes, time.monotonic() - start, lease_cluster=cluster)
    if run_lease.release_error:
        result.errors.append(run_lease.release_error)
    if run_lease.lost.is_set():
        result.errors.append(
            "the run Lease was taken by another run while this one was applying; writing stopped"
        )
    if cancel is not None and cancel.is_set():
        result.errors.append("the pass was cancelled (worker shutting down); writing stopped")
    return result
