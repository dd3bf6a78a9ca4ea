"""Discovery: one LIST per kind per cluster, all clusters in parallel, each with a deadline.

Two rounds: what translation reads (:data:`READ_LISTS`), then our own kinds (:data:`OWNED_LISTS`,
:meth:`Discovery.list_owned`) once translation is done, so that each object of ours is compared
with its desired object as it is decoded and an unchanged one is never held whole.

A cluster that cannot be listed completely is *unreachable* for this run: it is reported, nothing is
rendered for it, nothing is pruned in it, and nothing elsewhere is changed on its account.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.clusters.inventory import (
    ISTIO_CRDS_MISSING,
    ISTIOD_SELECTOR,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    READ_SHAPES,
    ClusterState,
    Inventory,
    StateBuilder,
    build_cluster_state,
    is_owned,
    settled_view,
    unavailable,
)
from reconciler.clusters.kube import (
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    ISTIO_RESOURCES,
    NODES,
    SERVICES,
    Decoder,
    KubeClient,
    KubeError,
    PageFeeder,
    Resource,
    decode_json,
    raw_page,
)
from reconciler.clusters.targets import ClusterTarget
from reconciler.sharing import Shared, share_parts

log = logging.getLogger(__name__)

OWNED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"

READ_LISTS: tuple[tuple[Resource, str | None], ...] = (
    (NODES, None),
    (ENDPOINT_SLICES, None),
    (SERVICES, None),
    (DEPLOYMENTS, ISTIOD_SELECTOR),
)
"""What translation reads: nodes, services, their endpoints, istiod (in :attr:`StateBuilder.ORDER`)."""

OWNED_LISTS: tuple[tuple[Resource, str | None], ...] = tuple(
    (r, OWNED_SELECTOR) for r in ISTIO_RESOURCES.values()
)
"""Our kinds, by our label: what the engine compares, writes and prunes."""

DISCOVERY_LISTS = READ_LISTS + OWNED_LISTS
"""What discovery LISTs in every cluster (resource, label selector)."""

InSync = Callable[[dict[str, Any]], "dict[str, Any] | None"]
"""The desired object a listed object of ours (:func:`~reconciler.clusters.inventory.is_owned`)
equals, or None: the engine's comparison, asked as each object is listed (see
:meth:`Discovery.list_owned`)."""


@dataclass
class Discovery:
    inventory: Inventory
    raw: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    clients: dict[str, KubeClient] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)
    """Clusters whose state came from ``serve``'s watch caches (no LIST sent)."""
    pending: dict[str, ClusterTarget] = field(default_factory=dict)
    """Reachable clusters whose objects of our kinds are not listed yet (:meth:`list_owned`)."""
    targets: list[ClusterTarget] = field(default_factory=list)
    cluster_timeout: float = 60.0
    workers: int = 8
    keep_raw: bool = True

    def close(self) -> None:
        for c in self.clients.values():
            c.close()

    def list_owned(self, in_sync: Mapping[str, InSync] | None = None) -> list[str]:
        """LIST our kinds in every pending cluster; returns the clusters that failed now (they
        become unreachable: see the module docstring).

        ``in_sync``: per cluster, the engine's comparison with the desired objects. An object it
        finds equal is kept only as :func:`~reconciler.clusters.inventory.settled_view` (mostly
        its desired object itself) and named
        in :attr:`ClusterState.in_sync`, right as its page is decoded: a no-op pass then never
        holds its thousands of unchanged objects at once (~10 MB at 1,000 services in 3 clusters).
        Translation must be done by then, which is why these kinds are listed after the others.
        Not with ``keep_raw``: a snapshot keeps every object as listed.
        """
        sharing = _SharingDecoder()
        todo, self.pending = list(self.pending.values()), {}

        def one(target: ClusterTarget) -> tuple[ClusterTarget, list[dict[str, Any]] | None, str | None]:
            state = self.inventory.clusters[target.name]
            check = None if self.keep_raw or in_sync is None else in_sync.get(target.name)
            # Not for a snapshot (keep_raw): it writes the objects as listed, and shared parts
            # would be YAML aliases.
            objects, error = self._list(
                target,
                OWNED_LISTS,
                lambda r: None if self.keep_raw else sharing.page(r, check, state.in_sync),
            )
            return target, objects, error

        failed: list[str] = []
        with _pool(self.workers, len(todo)) as pool:
            for target, objects, error in pool.map(one, todo):
                state = self.inventory.clusters[target.name]
                if objects is None:
                    log.warning("%s", unavailable(target.name, error or ""))
                    state.error = error
                    state.forget_owned()
                    self.raw.pop(target.name, None)  # an unreachable cluster has no snapshot
                    self.inventory.forget_index()  # its services are no longer to be found
                    failed.append(target.name)
                    continue
                if self.keep_raw:
                    self.raw.setdefault(target.name, []).extend(objects)
                state.add_owned(objects)
        return failed

    def list_owned_again(self, names: Iterable[str]) -> list[str]:
        """Forget what was listed of our kinds in ``names`` and LIST them whole (no comparison
        asked): when the desired objects they were compared with are no longer the ones the
        engine will use. Returns the clusters that failed now. (With ``keep_raw`` nothing was
        compared, so nothing is listed again.)"""
        if self.keep_raw:
            return []
        for name in names:
            state = self.inventory.clusters[name]
            if state.reachable and name not in self.cached:
                state.forget_owned()
                self.pending[name] = next(t for t in self.targets if t.name == name)
        return self.list_owned(None)

    def _list(
        self,
        target: ClusterTarget,
        lists: Sequence[tuple[Resource, str | None]],
        decoder_for: Callable[[Resource], Decoder | None],
    ) -> tuple[list[dict[str, Any]] | None, str | None]:
        """LIST ``lists`` in one cluster within what is left of its ``cluster_timeout``:
        the objects, or None and why not."""
        start = time.monotonic() - self.seconds.get(target.name, 0.0)
        objects: list[dict[str, Any]] = []
        try:
            for resource, selector in lists:
                if time.monotonic() - start > self.cluster_timeout:
                    raise KubeError(0, f"discovery took longer than {self.cluster_timeout:.0f}s", "Timeout")
                objects.extend(
                    self.clients[target.name].list(
                        resource,
                        label_selector=selector,
                        decoder=decoder_for(resource),
                    )
                )
        except KubeError as exc:
            return None, _explain(exc, target, resource)
        finally:
            self.seconds[target.name] = time.monotonic() - start
        return objects, None


def connect(targets: Sequence[ClusterTarget], timeout: float) -> tuple[dict[str, KubeClient], dict[str, str]]:
    """API clients per cluster; a cluster whose credentials cannot be loaded is an error, not a crash."""
    clients: dict[str, KubeClient] = {}
    errors: dict[str, str] = {}
    for t in targets:
        try:
            clients[t.name] = KubeClient(t.api_client(), t.name, timeout=timeout)
        except Exception as exc:  # kubeconfig loader raises many types
            errors[t.name] = f"cannot load credentials for context {t.context}: {exc}"
    return clients, errors


def discover(
    targets: Sequence[ClusterTarget],
    *,
    timeout: float = 10.0,
    cluster_timeout: float = 60.0,
    workers: int = 8,
    connected: tuple[dict[str, KubeClient], dict[str, str]] | None = None,
    cached: Mapping[str, list[dict[str, Any]] | None] | None = None,
    keep_raw: bool = True,
    owned_later: bool = False,
) -> Discovery:
    """LIST every cluster; ``connected`` reuses clients opened earlier (e.g. to take the run Lease).

    ``cached``: objects per cluster from synced watch caches (``WatchCaches.snapshot``); those
    clusters are not LISTed. A cluster mapped to None (cache not synced) is LISTed as usual.
    ``keep_raw``: keep every listed object in :attr:`Discovery.raw` (snapshots, a second plan).
    ``owned_later``: LIST only what translation reads (:data:`READ_LISTS`); our kinds are listed by
    :meth:`Discovery.list_owned`, once there are desired objects to compare them with.
    """
    clients, errors = connected if connected is not None else connect(targets, timeout)
    result = Discovery(
        Inventory(),
        clients=clients,
        targets=list(targets),
        cluster_timeout=cluster_timeout,
        workers=workers,
        keep_raw=keep_raw,
    )
    for name, message in errors.items():
        context = next(t.context for t in targets if t.name == name)
        result.inventory.clusters[name] = ClusterState(name=name, context=context, error=message)

    def one(
        target: ClusterTarget,
    ) -> tuple[ClusterTarget, ClusterState | list[dict[str, Any]] | None, str | None]:
        from_cache = (cached or {}).get(target.name)
        if from_cache is not None:
            result.cached.add(target.name)
            result.seconds[target.name] = 0.0
            return target, from_cache, None
        if keep_raw:  # a snapshot writes the objects as listed
            return (target, *result._list(target, READ_LISTS, lambda r: None))
        # Memory: what the LISTs decode to was most of a pass's peak (three clusters are listed at
        # once). Of the kinds we only read, only what is read is decoded, one item at a time, and
        # each item is built into the cluster's state as it is decoded.
        builder = StateBuilder(target.name, target.context)
        _, error = result._list(
            target,
            READ_LISTS,
            lambda r: PageFeeder(READ_SHAPES[r.kind], functools.partial(builder.add, r.kind)),
        )
        return target, (builder.finish() if error is None else None), error

    reachable = [t for t in targets if t.name in clients]
    with _pool(workers, len(reachable)) as pool:
        for target, found, error in pool.map(one, reachable):
            if found is None:
                log.warning("%s", unavailable(target.name, error or ""))
                result.inventory.clusters[target.name] = ClusterState(
                    name=target.name, context=target.context, error=error
                )
                continue
            if isinstance(found, ClusterState):
                result.inventory.clusters[target.name] = found
            else:
                if keep_raw:
                    result.raw[target.name] = found
                result.inventory.clusters[target.name] = build_cluster_state(
                    target.name, found, context=target.context
                )
            if target.name not in result.cached:
                result.pending[target.name] = target
    if not owned_later:
        result.list_owned()
    return result


def _pool(workers: int, jobs: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, jobs or 1)))


class _SharingDecoder:
    """Decodes the LIST pages of our kinds one item at a time: each item is compared (when asked)
    and reduced, or its equal parts shared, before the next one is decoded.

    A page of 1,000 ServiceEntries decodes to ~8 MB at once; decoded item by item, a page holds
    its JSON and what is kept of the items (the JSON is read once, into raw views of each item).
    Pages stay large, one request per kind: each continuation page cost the API server ~0.1 s
    at 1,000 services. The lock keeps one page being decoded at a time across clusters, which
    costs no parallelism (decoding holds the GIL anyway, and the requests are not under it) and
    lets equal parts be shared across clusters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._shared: Shared = {}

    def page(self, resource: Resource, in_sync: InSync | None, found: set[tuple[str, str, str]]) -> Decoder:
        """The decoder of one LIST of ``resource`` in one cluster: each owned object ``in_sync``
        finds equal to its desired object is reduced to :func:`settled_view` (and its key added
        to ``found``); the other items have their equal parts shared."""
        return _Page(self, resource, in_sync, found)


@dataclass
class _Page:
    sharing: _SharingDecoder
    resource: Resource
    in_sync: InSync | None
    found: set[tuple[str, str, str]]

    @property
    def exclusive(self) -> threading.Lock:
        """Answers of our kinds are read one at a time across clusters, as far as
        :data:`~reconciler.clusters.kube.EXCLUSIVE_WAIT` allows: three ServiceEntry answers of
        1.6-2.1 MB at once were the peak of a no-op pass's LISTs at 1,000 services. (Not the
        sharing lock: a cluster slow to send its answer must not hold up another's decoding.)"""
        return self.sharing._reading

    def decode(self, data: bytes | bytearray, /) -> Any:
        metadata, raw = raw_page(data)
        items: list[Any] = []
        listed: list[Any] = []  # what is kept of what was listed (never a desired object)
        with self.sharing._lock:
            for one in raw:
                item = decode_json(one)
                desired = self._in_sync(item)
                if desired is not None:
                    meta = desired["metadata"]  # the desired object's strings: the live ones are dropped
                    self.found.add((desired["kind"], meta["namespace"], meta["name"]))
                    item = settled_view(item, desired)
                items.append(item)
                if item is not desired:
                    listed.append(item)
            # Equal parts shared (translation's output, found equal, is not changed here)
            _share_equal_parts(listed, self.sharing._shared)
        return {"metadata": metadata, "items": items}

    def _in_sync(self, item: Any) -> dict[str, Any] | None:
        """The desired object ``item`` is found equal to, or None (not asked, not ours, differs)."""
        if self.in_sync is None or type(item) is not dict:
            return None  # not an object: left as it is, for the reader to report
        # a LIST of a custom resource names its items' kind; never guess the comparison wrong if not
        item.setdefault("apiVersion", self.resource.api_version)
        item.setdefault("kind", self.resource.kind)
        return self.in_sync(item) if is_owned(item) else None


def _share_equal_parts(items: list[Any], shared: Shared) -> None:
    """Make equal parts of our listed objects one object (:mod:`reconciler.sharing`): one cluster's
    2,167 objects at 1,000 services decode to 14.7 MB, ~5 MB shared. Listed objects are only ever
    read, never changed in place. An item that is not an object is left as it is, for the reader
    to report."""
    for item in items:
        if type(item) is dict:
            share_parts(item, shared)


def _explain(exc: KubeError, target: ClusterTarget, resource: Resource) -> str:
    """Why a cluster could not be discovered, in words that say what to fix."""
    if exc.status == 401:
        return f"unauthorized: the credentials of context {target.context} were rejected"
    if exc.status == 403:
        return f"forbidden: {exc.message} (see the ClusterRole in cronjob.yaml for the permissions needed)"
    if exc.status == 404 and resource in ISTIO_RESOURCES.values():
        # A LIST of a kind the server does not serve is a bare "404 page not found": the CRD is missing.
        return (
            f"{ISTIO_CRDS_MISSING} in cluster {target.name} "
            f"({resource.plural}.{resource.api_version.split('/')[0]} not served); install Istio there "
            "(or its CRDs) — nothing is written to or pruned in this cluster until then"
        )
    return str(exc)
