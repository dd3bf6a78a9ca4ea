"""One reconcile pass over a policy directory: plan -> (lease) -> sync -> result.

The git checkout before it and the status commit after it are the caller's (``reconcile`` and
``serve``), so this pass is the same whether policies come from a clone, a CronJob volume or a
developer's working tree.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.clusters.kube import KubeClient
from reconciler.engine.changeset import ChangeSet
from reconciler.engine.lease import RunLease
from reconciler.engine.sync import SyncOptions, sync
from reconciler.plan import ClusterSource, Plan, build_plan

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
    """The run lease cannot be checked (management cluster unknown or unreachable)."""


def lease_client(plan: Plan, settings: LeaseSettings) -> tuple[str, KubeClient]:
    clients = plan.discovery.clients if plan.discovery else {}
    name = settings.cluster or plan.repo.management_cluster or (sorted(clients)[0] if clients else None)
    if name is None or name not in clients:
        raise LeaseUnavailable(f"management cluster {name or '(none)'} is not among the clusters of this run")
    state = plan.inventory.clusters.get(name)
    if state is not None and not state.reachable:
        raise LeaseUnavailable(
            f"management cluster {name} is unreachable, so the run lease cannot be taken: {state.error}"
        )
    return name, clients[name]


def run_pass(
    root: Path,
    source: ClusterSource,
    options: SyncOptions,
    lease: LeaseSettings | None = None,
    plan: Plan | None = None,
) -> PassResult:
    """Plan and sync once. With ``options.apply`` and not ``dry_run``, hold the Lease while writing."""
    start = time.monotonic()
    plan = plan or build_plan(root, source)
    clients = plan.discovery.clients if plan.discovery else {}
    if options.apply and not options.dry_run:
        if lease is None:
            lease = LeaseSettings()
        cluster, client = lease_client(plan, lease)
        run_lease = RunLease(client, name=lease.name, namespace=lease.namespace, duration=lease.duration)
        with run_lease:
            changes = sync(plan, clients, options)
        result = PassResult(plan, changes, time.monotonic() - start, lease_cluster=cluster)
        if run_lease.release_error:
            result.errors.append(run_lease.release_error)
        if run_lease.lost.is_set():
            result.errors.append("the run Lease was taken by another run while this one was applying")
        return result
    return PassResult(plan, sync(plan, clients, options), time.monotonic() - start)
