"""The read-only front half of every run: policies + live state -> desired state.

``build_plan`` loads ``reconciler.yaml``, gets the live state (discovery over the selected kube
contexts, or a snapshot directory), then loads the policies and translates — or reuses the last
build when neither the policy commit nor what translation reads from discovery changed
(:mod:`reconciler.buildcache`). ``render``, ``explain``, ``diff`` and
``reconcile`` all start here, so they can never disagree about what is desired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.buildcache import Build, BuildCache
from reconciler.clusters.discover import Discovery, connect, discover
from reconciler.clusters.inventory import Inventory
from reconciler.clusters.kube import KubeClient
from reconciler.clusters.snapshot import read_snapshot
from reconciler.clusters.targets import ClusterTarget, resolve_targets
from reconciler.engine.sync import Desired, in_sync_checks, prune_suspension
from reconciler.findings import Finding
from reconciler.policy import PolicySet, load_and_check
from reconciler.repo_config import RepoConfig, load_repo_config
from reconciler.translate import Translation, translate

log = logging.getLogger(__name__)


@dataclass
class ClusterSource:
    """Where live state comes from: a snapshot directory, or kube contexts."""

    state: Path | None = None
    kubeconfigs: list[str] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    in_cluster: bool = False
    request_timeout: float = 10.0
    cluster_timeout: float = 60.0
    keep_raw: bool = False
    """Keep every listed object as the server returned it (:attr:`Discovery.raw`), for a snapshot
    export or a second plan over the same state. Off, the inputs (nodes, services, endpoints) are
    freed once the inventory is built: ~30 MB of a no-op pass's peak at 1,000 services."""


@dataclass
class Plan:
    root: Path
    repo: RepoConfig
    policies: PolicySet
    inventory: Inventory
    translation: Translation
    discovery: Discovery | None
    config_findings: list[Finding] = field(default_factory=list)
    build_key: str = ""
    """The build's identity when it went through a build cache (equal keys: the same policies and
    translation, see :mod:`reconciler.buildcache`); empty otherwise."""

    @property
    def findings(self) -> list[Finding]:
        out = list(self.config_findings) + list(self.policies.findings)
        for outcome in self.translation.outcomes.values():
            out.extend(outcome.findings)
        return out

    def desired(self) -> Desired:
        """The engine's input: desired objects, live state and the prune safety inputs."""
        protected = set(self.policies.invalid)
        protected |= {k for k, o in self.translation.outcomes.items() if o.blocking}
        return Desired(
            objects=self.translation.objects,
            inventory=self.inventory,
            protected=frozenset(protected),
            prune_suspended=prune_suspension(self.policies.unreadable_files, self.findings),
        )

    @property
    def clients(self) -> dict[str, KubeClient]:
        """API clients of the discovered clusters (none when live state came from a snapshot)."""
        return self.discovery.clients if self.discovery is not None else {}

    def close(self) -> None:
        if self.discovery is not None:
            self.discovery.close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Connection:
    """API clients opened before anything is listed.

    A writing run takes its Lease with one of these clients *before* discovery, so the live state it
    plans from is never older than its lock (otherwise a run could apply a plan listed while another
    run was still writing).
    """

    targets: list[ClusterTarget]
    clients: dict[str, KubeClient]
    errors: dict[str, str]
    """Clusters whose credentials could not be loaded (reported as unreachable by discovery)."""

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def connect_clusters(source: ClusterSource, repo: RepoConfig) -> Connection:
    targets = resolve_targets(
        repo, kubeconfigs=source.kubeconfigs, contexts=source.contexts, in_cluster=source.in_cluster
    )
    clients, errors = connect(targets, source.request_timeout)
    return Connection(list(targets), clients, errors)


def load_inventory(
    source: ClusterSource,
    repo: RepoConfig,
    connection: Connection | None = None,
    cached: Mapping[str, list[dict[str, Any]] | None] | None = None,
    owned_later: bool = False,
) -> tuple[Inventory, Discovery | None]:
    """Live state: a snapshot directory, or discovery (``cached``, ``owned_later``: see :func:`discover`)."""
    if source.state is not None:
        wanted = [repo.cluster_for_context(c) for c in source.contexts] or None
        return read_snapshot(source.state, wanted), None
    connection = connection or connect_clusters(source, repo)
    found = discover(
        connection.targets,
        timeout=source.request_timeout,
        cluster_timeout=source.cluster_timeout,
        connected=(connection.clients, connection.errors),
        cached=cached,
        keep_raw=source.keep_raw,
        owned_later=owned_later,
    )
    return found.inventory, found


def build_plan(
    root: Path,
    source: ClusterSource,
    connection: Connection | None = None,
    cached: Mapping[str, list[dict[str, Any]] | None] | None = None,
    build_cache: BuildCache | None = None,
) -> Plan:
    """Discover (with ``connection``'s clients when given; the plan then owns them), load and translate.

    ``cached``: live objects per cluster from ``serve``'s watch caches, used instead of LISTs.
    ``build_cache``: reuse the last load + translation when the policy tree and the discovered
    state it read are unchanged (see :mod:`reconciler.buildcache`).
    """
    repo, config_findings = load_repo_config(root)
    # Our own kinds are listed after translation (owned_later), so that each listed object is
    # compared with its desired object as it arrives and an unchanged one is not held whole.
    inventory, discovery = load_inventory(source, repo, connection, cached, owned_later=True)
    try:
        if discovery is not None and discovery.pending:
            # The build is kept once the LISTs of our kinds confirmed the state it was made from.
            first, key, fresh = _build(root, repo, inventory, build_cache, keep=False)
            build, key = _list_owned(
                discovery, first, key, lambda: _build(root, repo, inventory, build_cache)[:2]
            )
            if build is first and fresh and build_cache is not None:
                _keep(build_cache, key, build)
        else:
            build, key, _ = _build(root, repo, inventory, build_cache)
    except BaseException:
        if discovery is not None and connection is None:
            discovery.close()  # clients this function opened; a caller's connection is the caller's
        raise
    return Plan(
        root, repo, build.policies, inventory, build.translation, discovery, config_findings, key.decode()
    )


def _list_owned(
    discovery: Discovery, build: Build, key: bytes, rebuild: Callable[[], tuple[Build, bytes]]
) -> tuple[Build, bytes]:
    """LIST our kinds in the clusters discovered, each object compared with ``build``'s desired
    objects as it arrives (:func:`in_sync_checks`); returns the build the engine uses.

    A cluster that fails here is unreachable, but translation read it as reachable (it may be the
    failover destination of other clusters' objects): the build is made again without it. A
    cluster whose desired objects changed with it was compared with the wrong ones, so its
    objects are listed again, whole (which may fail too: then once more). Rare, but it lasts while
    a cluster's Istio CRDs are missing or our kinds are forbidden there: such a pass translates
    twice (the second build is the one the build cache keeps, and serves the next pass).
    """
    failed = discovery.list_owned(in_sync_checks(build.translation.objects))
    while failed:
        log.warning("building again without %s", ", ".join(sorted(failed)))
        before, (build, key) = build, rebuild()
        compared = [n for n, s in discovery.inventory.clusters.items() if s.in_sync]
        failed = discovery.list_owned_again(n for n in compared if _bodies(before, n) != _bodies(build, n))
    return build, key


def _bodies(build: Build, cluster: str) -> list[dict[str, Any]]:
    return [d.body for d in build.translation.objects.get(cluster, [])]


def _build(
    root: Path, repo: RepoConfig, inventory: Inventory, cache: BuildCache | None, keep: bool = True
) -> tuple[Build, bytes, bool]:
    """Load, check and translate — or reuse the last build when nothing it reads has changed.
    Returns the build, its cache key (empty without a cache) and whether it was made now (then
    kept in the cache, unless ``keep`` is False: see :func:`_keep`)."""
    if cache is not None and not cache.serves(root / repo.status.path):
        cache = None  # the loader reads a directory the cache's key does not cover
    key = cache.key(root, inventory) if cache is not None else b""
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            log.info(
                "build reused: %s and the discovered state are unchanged since the last pass",
                cache.label or cache.source,
            )
            return hit, key, False
    policies = load_and_check(root, status_path=repo.status.path)
    translation = translate(
        policies, inventory, configured_clusters=inventory.clusters, tenancy=repo.namespace_boundaries()
    )
    build = Build(policies, translation)
    if cache is not None and keep:
        _keep(cache, key, build)
    return build, key, True


def _keep(cache: BuildCache, key: bytes, build: Build) -> None:
    """Keep ``build`` for the passes to come, each of which loads it whole: its equal parts shared
    first (what a no-op pass holds of it at 1,000 services: 19 -> 14 MB)."""
    build.translation.share_equal_parts()
    cache.put(key, build)
