"""Diff, server-side apply and safe prune, per cluster, all clusters in parallel.

For each cluster: compare every desired object with the live object we own (on the fields we own);
only objects that differ cost a request — a server-side dry-run apply to confirm the difference
(``diff``), or the apply itself (``reconcile``). Then prune what we own and no longer desire, with
every safety catch: never in a cluster that was not discovered, never objects of a policy that failed
to load or validate, never while a policy file could not be read, never more than
``max_prune_ratio`` of a cluster's objects, never an object without our label *and* annotation.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.clusters.inventory import ClusterState, Inventory, is_owned, sources_of
from reconciler.clusters.kube import FIELD_MANAGER, ISTIO_RESOURCES, KubeClient, KubeError
from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.engine.normalize import (
    changed_paths,
    comparable_answer,
    comparable_live,
    declared_fields,
    field_owners,
    fields_taken,
    other_managers,
    same_as_live,
)
from reconciler.findings import Finding, ObjectKey
from reconciler.translate import MANAGED_KINDS
from reconciler.translate.result import DesiredObject

log = logging.getLogger(__name__)

CLUSTER_WORKERS = 4
"""Clusters synced at once: each mostly waits on its API server, and more would only add threads."""

WRITES_IN_FLIGHT = 4
"""Requests of one kind sent to one cluster at once. Objects of a kind are independent of each
other, and a lone request mostly waits on the API server: on kube-apiserver 1.37, 900 applies over
3 clusters took 2.3 s one at a time and 1.85 s four at a time per cluster. Kinds still go in order
(ServiceEntries, DestinationRules, then VirtualServices), so a route never overtakes its host."""

_CONFLICT_MANAGER = re.compile(r'conflicts? with "([^"]+)"')


@dataclass
class SyncOptions:
    apply: bool = False
    """False: compute the diff only (confirmations are dry-run). True: make the changes."""
    dry_run: bool = False
    """With ``apply``: send every write with ``dryRun=All`` (validated by the server, not persisted)."""
    force: bool = True
    """Take over fields owned by another manager (Git is the source of truth)."""
    prune: bool = True
    adopt: bool = False
    """Take over existing objects that lack our ownership markers."""
    max_prune_ratio: float = 0.5
    allow_mass_prune: bool = False
    cluster_filter: set[str] | None = None
    """Only these clusters are compared, written and pruned (None: every cluster; a shard: its own)."""


@dataclass(frozen=True)
class Desired:
    """What the engine is asked to make true: the build stage's output, as the engine needs it.

    The engine never sees policies or the plan itself (it sits below them): only the objects per
    cluster, the live state they are compared with, and the two prune safety inputs derived from
    the build — which policies' objects must be kept, and whether pruning is off for the run.
    """

    objects: Mapping[str, Sequence[DesiredObject]]
    inventory: Inventory
    protected: frozenset[ObjectKey] = frozenset()
    """Policies whose existing objects are kept as they are (failed to load, validate or translate)."""
    prune_suspended: str = ""
    """Non-empty: why nothing may be deleted in this run (see :func:`prune_suspension`)."""


def prune_suspension(unreadable_files: Iterable[str], findings: Iterable[Finding]) -> str:
    """Why pruning is off for this whole run ("" when it may run).

    Like Flux and Config Sync refusing to prune after a failed build: while any error-level finding
    exists anywhere in the repository (an unreadable file, an unknown kind in our API groups, an
    invalid reconciler.yaml, ...), what Git *means* is uncertain, and an object that merely looks
    unwanted may belong to the policy that failed. Creating and updating still happen; deleting waits
    for a clean build.
    """
    unreadable = sorted(set(unreadable_files))
    if unreadable:
        return "pruning suspended: these files could not be read, so their objects are unknown: " + ", ".join(
            unreadable
        )
    errors = [f for f in findings if f.is_error]
    if not errors:
        return ""
    where = sorted({f.location.file if f.location else str(f.object or "(repository)") for f in errors})
    return (
        f"pruning suspended: the repository has {len(errors)} error(s) (in {', '.join(where[:5])}"
        f"{', ...' if len(where) > 5 else ''}); nothing is deleted until they are fixed"
    )


def _never() -> str:
    return ""


def in_sync_checks(
    objects: Mapping[str, Sequence[DesiredObject]],
) -> dict[str, Callable[[dict[str, Any]], dict[str, Any] | None]]:
    """Per cluster, the desired object a live object of ours equals (None: it differs, or nothing is
    desired there): the question :meth:`_ClusterSync._decide` asks of every object, for discovery
    to ask as each object is listed (:meth:`reconciler.clusters.discover.Discovery.list_owned`).
    The answers are in :attr:`ClusterState.in_sync`, and this engine takes them as they are."""

    def check(
        by_key: dict[tuple[str, str, str], DesiredObject],
    ) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
        def in_sync(live: dict[str, Any]) -> dict[str, Any] | None:
            d = by_key.get(_key(live))
            return d.body if d is not None and same_as_live(live, d.body) else None

        return in_sync

    return {
        name: check({(d.kind, d.namespace, d.name): d for d in desired}) for name, desired in objects.items()
    }


def sync(
    desired: Desired,
    clients: Mapping[str, KubeClient],
    options: SyncOptions,
    stop: Callable[[], str] = _never,
) -> ChangeSet:
    """Compare (and with ``options.apply``, write) every cluster; clusters without a client (live
    state read from a snapshot) are compared locally, without server confirmation.

    ``stop`` is asked before every object: a non-empty answer (the Lease was lost, the worker is
    shutting down) leaves every remaining object as it is, so no write happens after the reason.
    """
    changes = ChangeSet(dry_run=not options.apply or options.dry_run)
    clusters = desired.inventory.clusters
    unreachable = {n for n, s in clusters.items() if not s.reachable}
    names = sorted(n for n in clusters if options.cluster_filter is None or n in options.cluster_filter)
    for name in names:
        if not clusters[name].reachable:
            changes.clusters[name] = ClusterResult(name, error=clusters[name].error)

    def one(name: str) -> ClusterResult:
        worker = _ClusterSync(
            clusters[name],
            list(desired.objects.get(name, [])),
            clients.get(name),
            options,
            desired.protected,
            unreachable,
            desired.prune_suspended,
            stop,
        )
        try:
            return worker.run()
        except KubeError as exc:  # the cluster went away mid-run
            log.error("cluster %s failed: %s", name, exc)
            result = worker.result
            result.error = f"failed during sync: {exc}"
            return result

    todo = [n for n in names if clusters[n].reachable]
    if options.apply and any(n not in clients for n in todo):
        raise ValueError(
            "applying needs a client for every reachable cluster (live state came from a snapshot?)"
        )
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, min(CLUSTER_WORKERS, len(todo) or 1))
    ) as pool:
        for result in pool.map(one, todo):
            changes.clusters[result.cluster] = result
    return changes


class _ClusterSync:
    def __init__(
        self,
        state: ClusterState,
        desired: list[DesiredObject],
        client: KubeClient | None,
        options: SyncOptions,
        protected: frozenset[ObjectKey],
        unreachable: set[str],
        suspended: str,
        stop: Callable[[], str] = _never,
    ) -> None:
        self.state = state
        self.desired = desired
        self.client = client
        self.options = options
        self.protected = protected
        self.unreachable = unreachable
        self.suspended = suspended
        self.stop = stop
        self.result = ClusterResult(state.name)

    # -- helpers -----------------------------------------------------------------------------------

    def _change(
        self, obj: dict[str, Any], action: Action, sources: Iterable[ObjectKey], **kw: Any
    ) -> ObjectChange:
        meta = obj["metadata"]
        change = ObjectChange(
            self.state.name,
            obj["kind"],
            meta.get("namespace", ""),
            meta["name"],
            action,
            tuple(sources),
            **kw,
        )
        self.result.changes.append(change)
        return change

    def run(self) -> ClusterResult:
        live = {_key(o): o for o in self.state.managed}
        claimed = {_key(o): o for o in self.state.claimed}
        # Hosts whose ServiceEntry/DestinationRule neither exists live nor is (or would be) written
        # here: a route to one of them would send clients to an undefined host (503s), so a
        # VirtualService routing there is held instead — a rollout never gets ahead of its hosts.
        missing_hosts: set[str] = set()
        routes: dict[str, str] = {}  # host -> a VirtualService that routes there after this run
        rank = {k: i for i, k in enumerate(MANAGED_KINDS)}  # ServiceEntries and DestinationRules first
        self.strangers = self._strangers(
            {d.kind for d in self.desired if _key(d.body) not in live and _key(d.body) not in claimed}
        )
        ordered = sorted(self.desired, key=lambda o: rank.get(o.kind, len(rank)))
        for _, group in itertools.groupby(ordered, key=lambda o: o.kind):
            self._sync_kind(list(group), live, claimed, routes, missing_hosts)
        self._prune(live, routes)
        return self.result

    def _sync_kind(
        self,
        group: list[DesiredObject],
        live: dict[tuple[str, str, str], dict[str, Any]],
        claimed: dict[tuple[str, str, str], dict[str, Any]],
        routes: dict[str, str],
        missing_hosts: set[str],
    ) -> None:
        """The desired objects of one kind: local decisions here, requests a few at a time.

        Every object is decided in order without a request where it can be (held, unchanged, not
        ours); the ones that need the server (confirm, apply) are sent :data:`WRITES_IN_FLIGHT` at
        a time. Each still asks ``stop`` right before its request, and the change set lists the
        objects in the same order as if they had been sent one by one.
        """
        first = len(self.result.changes)
        outcomes: list[tuple[DesiredObject, dict[str, Any] | None, ObjectChange | _Start]] = []
        for d in group:
            key = (d.kind, d.namespace, d.name)
            current = live.pop(key, None)
            reason = self.stop()
            if reason:
                outcomes.append((d, current, self._hold(d, current, f"not written: {reason}")))
                continue
            stranded = sorted(routed_hosts(d.body) & missing_hosts) if missing_hosts else []
            if stranded:
                why = f"routes to {', '.join(stranded)}, whose ServiceEntry/DestinationRule is not in this cluster"
                outcomes.append((d, current, self._hold(d, current, why)))
                continue
            outcomes.append((d, current, self._decide(d, current, claimed.get(key))))
        remote = [
            (i, d, cur, start) for i, (d, cur, start) in enumerate(outcomes) if isinstance(start, _Start)
        ]
        if len(remote) > 1 and self.client is not None:
            with concurrent.futures.ThreadPoolExecutor(max_workers=WRITES_IN_FLIGHT) as pool:
                done = list(pool.map(lambda job: self._send(*job[1:]), remote))
        else:
            done = [self._send(d, cur, start) for _, d, cur, start in remote]
        for (i, _, _, _), change in zip(remote, done, strict=True):
            outcomes[i] = (outcomes[i][0], outcomes[i][1], change)
        if len(remote) > 1:  # requests finish in any order: list the changes in the desired order
            order = {(d.namespace, d.name): i for i, (d, _, _) in enumerate(outcomes)}
            self.result.changes[first:] = sorted(
                self.result.changes[first:], key=lambda c: order.get((c.namespace, c.name), len(order))
            )
        for d, current, outcome in outcomes:
            assert isinstance(outcome, ObjectChange)
            if outcome.action in (Action.CREATE, Action.CONFIGURE, Action.UNCHANGED):
                _note_routes(routes, d.body)
            elif current is not None and (d.kind, d.namespace, d.name) in self.state.in_sync:
                _note_routes(routes, d.body)  # held as it is live, which routes as desired
            else:  # held, failed or conflict: what is live stays live
                _note_routes(routes, current)
            available = current is not None or outcome.action in (
                Action.CREATE,
                Action.CONFIGURE,
                Action.UNCHANGED,
            )
            if not available:
                missing_hosts |= defined_hosts(d.body)

    # -- create / configure ------------------------------------------------------------------------

    def _strangers(self, kinds: set[str]) -> dict[tuple[str, str, str], list[str]]:
        """Objects we are about to create that already exist without our label, with their managers.

        Discovery lists only labelled objects; rather than a dry-run apply before every create (a
        first sync would double its requests), one metadata-only LIST per kind that has creates finds
        the names someone else already uses. Objects seen here are confirmed with the server (and
        are a conflict unless adopted); all others are created directly.
        """
        out: dict[tuple[str, str, str], list[str]] = {}
        if self.client is None:
            return out
        for kind in sorted(kinds):
            for item in self.client.list(ISTIO_RESOURCES[kind], metadata_only=True):
                out[_key(item)] = other_managers(item) or ["(unknown)"]
        return out

    def _hold(self, d: DesiredObject, live: dict[str, Any] | None, why: str) -> ObjectChange:
        """Leave the object exactly as it is: "kept as it is live" only when a live object exists."""
        verb = "kept as it is live" if live is not None else "not created"
        return self._change(d.body, Action.HELD, d.sources, message=f"{verb}: {why}")

    def _decide(
        self, d: DesiredObject, live: dict[str, Any] | None, claimed: dict[str, Any] | None
    ) -> ObjectChange | _Start:
        """What one desired object needs, without a request: held, unchanged, not ours — or the
        :class:`_Start` of the request(s) :meth:`_send` makes."""
        why = self._why_held(d, live)
        if why:
            return self._hold(d, live, why)
        if live is not None and (
            (d.kind, d.namespace, d.name) in self.state.in_sync or same_as_live(live, d.body)
        ):
            return self._change(d.body, Action.UNCHANGED, d.sources)
        return self._start(d, live, claimed)

    def _send(self, d: DesiredObject, live: dict[str, Any] | None, start: _Start) -> ObjectChange:
        """Confirm, write and classify one object (it differs from what is live, or is new)."""
        reason = self.stop()  # asked again right before the request: it may run after others
        if reason:
            return self._hold(d, live, f"not written: {reason}")
        try:
            result: dict[str, Any] | None = None
            # diff: the server's view of every change; apply: only to look at a name someone else uses
            if not self.options.apply or (start.new and (d.kind, d.namespace, d.name) in self.strangers):
                confirmed = self._confirm(d, start)
                if isinstance(confirmed, ObjectChange):
                    return confirmed
                result = confirmed
            if self.options.apply:
                # A new object is created unforced: nobody else holds a field of it, and if someone
                # created it since the cluster was listed, their fields answer 409 and it stays theirs.
                force = (self.options.force and not start.new) or start.adopting
                result = self._server_apply(d, dry_run=self.options.dry_run, force=force, new=start.new)
        except _Conflict as exc:
            return self._change(
                d.body, Action.CONFLICT, d.sources, previous_managers=exc.managers, message=exc.message
            )
        except KubeError as exc:
            return self._change(
                d.body, Action.FAILED, d.sources, message=f"{d.kind} {d.namespace}/{d.name}: {exc.message}"
            )
        assert result is not None
        return self._classify(d, start, result)

    def _why_held(self, d: DesiredObject, live: dict[str, Any] | None) -> str:
        """Why this object must stay exactly as it is this run ("" when it may change)."""
        waiting = sorted(d.depends_on & self.unreachable)
        if waiting:
            return f"depends on unreachable cluster(s) {', '.join(waiting)}"
        # (parsing every live object's sources annotation is skipped when no policy is invalid)
        bad = (
            [k for k in sources_of(live) if k in self.protected]
            if live is not None and self.protected
            else []
        )
        if bad:
            return "source policy " + ", ".join(f"{k}" for k in bad) + " is invalid"
        return ""

    def _start(
        self, d: DesiredObject, live: dict[str, Any] | None, claimed: dict[str, Any] | None
    ) -> _Start | ObjectChange:
        """What the object is before we write: ours, someone else's (conflict or adoption), or new."""
        if live is not None:
            fields = declared_fields(d.body)
            return _Start(comparable_live(live, fields), field_owners(live, fields), new=False, live=live)
        if claimed is None:
            return _Start({}, [], new=True)
        # Our label without our sources annotation: made (or relabelled) by hand, not by us.
        managers = sorted({str(m.get("manager")) for m in claimed["metadata"].get("managedFields") or []})
        if not self.options.adopt:
            why = (
                "carries the label app.kubernetes.io/managed-by=mesh-reconciler but not our sources "
                "annotation, so it was not made by mesh-reconciler"
            )
            return self._not_ours(d, managers, why)
        return _Start(comparable_live(claimed), managers, new=False, adopting=True)

    def _confirm(self, d: DesiredObject, start: _Start) -> dict[str, Any] | ObjectChange:
        """Ask the server what the object would become (defaults, normalisation), and find objects
        that exist without any of our markers — never overwrite those by accident."""
        if start.new and (d.kind, d.namespace, d.name) not in self.strangers:
            return _stand_in(d)  # nothing there: the server has nothing to add but its defaults
        result = self._server_apply(d, dry_run=True, force=self.options.force or self.options.adopt)
        strangers = other_managers(result) if start.new else []
        if strangers:
            if not self.options.adopt:
                why = (
                    f"already exists and is not managed by mesh-reconciler (managers: {', '.join(strangers)})"
                )
                return self._not_ours(d, strangers, why)
            start.new, start.adopting = False, True
            start.previous = sorted(set(start.previous) | set(strangers))
            start.before = comparable_live(_strip_ours(result))
        return result

    def _classify(self, d: DesiredObject, start: _Start, result: dict[str, Any]) -> ObjectChange:
        after = comparable_answer(result, d.body)
        paths = [] if start.new else changed_paths(start.before, after)
        previous = start.previous
        message = "adopted (was not managed by mesh-reconciler)" if start.adopting else ""
        if start.live is not None and not start.adopting and self.client is not None:
            # The server's answer says whose fields the apply took (or, dry-run, would take); a
            # manager that only shares a field with the same value keeps it and is not named.
            previous = fields_taken(start.live, result, declared_fields(d.body))
            if previous and self.options.apply:
                log.info(
                    "%s %s/%s in %s: took over fields from %s",
                    d.kind,
                    d.namespace,
                    d.name,
                    self.state.name,
                    ", ".join(previous),
                )
        elif start.new and self.client is not None and (found := other_managers(result)):
            # Created by someone else between our LIST and our (unforced) apply, with no field in
            # conflict with ours: the apply merged into their object. Say so rather than "created".
            previous = found
            start.new = False
            paths = changed_paths({}, after)
            message = (
                f"existed already: created by {', '.join(previous)} after this cluster was listed; "
                "our fields were merged into it"
            )
        if not start.new and not start.adopting and not paths:
            return self._change(
                d.body, Action.UNCHANGED, d.sources, message="difference normalised away by the API server"
            )
        return self._change(
            d.body,
            Action.CREATE if start.new else Action.CONFIGURE,
            d.sources,
            changed_paths=paths,
            compared=(start.before, after),
            previous_managers=previous,
            written=self.options.apply and not self.options.dry_run,
            message=message,
        )

    def _not_ours(self, d: DesiredObject, managers: list[str], why: str) -> ObjectChange:
        """A conflict: an object at our name that we did not make is left alone unless ``--adopt``."""
        return self._change(
            d.body,
            Action.CONFLICT,
            d.sources,
            previous_managers=managers,
            message=(
                f"{d.kind} {d.namespace}/{d.name} {why}; it is left alone — "
                "rename the policy's object or rerun with --adopt to take it over"
            ),
        )

    def _server_apply(
        self, d: DesiredObject, *, dry_run: bool, force: bool, new: bool = False
    ) -> dict[str, Any]:
        """One server-side apply, and the one place a 409 (fields owned by another manager) is handled.

        A single request, forced when ``force`` is set: whose fields it took over is read from the
        managedFields of the answer (:func:`fields_taken`), not from a non-forced probe first.
        """
        if self.client is None:  # live state from a snapshot: no server to ask
            return _stand_in(d)
        try:
            return self.client.apply(ISTIO_RESOURCES[d.kind], d.body, force=force, dry_run=dry_run)
        except KubeError as exc:
            if exc.status != 409:
                raise
            managers = _conflict_managers(exc)
            raise _Conflict(managers, _conflict_message(d, exc, managers, new=new)) from None

    # -- prune -------------------------------------------------------------------------------------

    def _prune(
        self, leftovers: dict[tuple[str, str, str], dict[str, Any]], routes: Mapping[str, str]
    ) -> None:
        """Delete what we own and no longer desire, unless a safety catch applies.

        ``routes`` maps each host that a VirtualService of ours still routes to after this run to
        that VirtualService: the ServiceEntry/DestinationRule defining such a host is kept, since
        deleting it would turn a kept route into 503s.
        """
        candidates: list[tuple[dict[str, Any], tuple[ObjectKey, ...]]] = []
        routes = dict(routes)
        order = {k: i for i, k in enumerate(reversed(MANAGED_KINDS))}  # VirtualServices first
        for obj in sorted(leftovers.values(), key=lambda o: order.get(o["kind"], -1)):
            if not is_owned(obj) or obj["kind"] not in MANAGED_KINDS:
                continue  # defensive: inventory only lists owned objects, and only these kinds
            sources = sources_of(obj)
            bad = [k for k in sources if k in self.protected]
            in_use = sorted(h for h in defined_hosts(obj) if h in routes)
            if bad:
                self._change(
                    obj,
                    Action.HELD,
                    sources,
                    message="not pruned: source policy " + ", ".join(str(k) for k in bad) + " is invalid",
                )
            elif in_use:
                self._change(
                    obj,
                    Action.HELD,
                    sources,
                    message=f"not pruned: {routes[in_use[0]]} still routes to {', '.join(in_use)}",
                )
            elif self.suspended:
                self._change(obj, Action.HELD, sources, message=self.suspended)
            elif not self.options.prune:
                self._change(
                    obj, Action.HELD, sources, message="no longer desired; not pruned (pruning disabled)"
                )
            else:
                candidates.append((obj, sources))
                continue
            _note_routes(routes, obj)  # kept as it is: a VirtualService among these still routes
        owned = len(self.state.managed)
        if (
            candidates
            and owned
            and len(candidates) / owned > self.options.max_prune_ratio
            and not self.options.allow_mass_prune
        ):
            message = (
                f"refusing to prune {len(candidates)} of {owned} objects in {self.state.name} "
                f"(more than --max-prune-ratio {self.options.max_prune_ratio:g}); rerun with --allow-mass-prune if intended"
            )
            self.result.notes.append(message)
            for obj, sources in candidates:
                self._change(obj, Action.FAILED, sources, message=message)
            return
        for obj, sources in sorted(
            candidates,
            key=lambda c: (
                order[c[0]["kind"]],
                c[0]["metadata"].get("namespace", ""),
                c[0]["metadata"]["name"],
            ),
        ):
            diff: tuple[dict[str, Any], dict[str, Any]] = (comparable_live(obj), {})
            if not self.options.apply:
                self._change(obj, Action.PRUNE, sources, compared=diff)
                continue
            in_use = sorted(h for h in defined_hosts(obj) if h in routes)
            if in_use:  # a VirtualService before it could not be deleted and still routes here
                message = f"not pruned: {routes[in_use[0]]} still routes to {', '.join(in_use)}"
                self._change(obj, Action.HELD, sources, message=message)
                continue
            reason = self.stop()
            if reason:
                self._change(obj, Action.HELD, sources, message=f"not pruned: {reason}")
                _note_routes(routes, obj)
                continue
            assert self.client is not None
            try:
                self.client.delete(
                    ISTIO_RESOURCES[obj["kind"]],
                    obj["metadata"]["name"],
                    obj["metadata"].get("namespace"),
                    uid=obj["metadata"].get("uid"),
                    dry_run=self.options.dry_run,
                )
            except KubeError as exc:
                if exc.status == 404:
                    self._change(obj, Action.PRUNE, sources, compared=diff, message="already gone")
                    continue
                self._change(obj, Action.FAILED, sources, message=f"delete failed: {exc.message}")
                _note_routes(routes, obj)
                continue
            self._change(obj, Action.PRUNE, sources, compared=diff, written=not self.options.dry_run)


@dataclass
class _Start:
    """An object as it is before we write it (comparable form), and who owned its fields."""

    before: dict[str, Any]
    previous: list[str]
    new: bool
    """No object exists at this name (as far as we know before asking the server)."""
    adopting: bool = False
    live: dict[str, Any] | None = None
    """The live object we own (with its managedFields), to tell whose fields the apply took."""


class _Conflict(Exception):
    def __init__(self, managers: list[str], message: str) -> None:
        super().__init__(message)
        self.managers = managers
        self.message = message


def _conflict_managers(exc: KubeError) -> list[str]:
    names = set(_CONFLICT_MANAGER.findall(exc.message))
    for cause in exc.details.get("causes") or []:
        names.update(_CONFLICT_MANAGER.findall(str(cause.get("message", ""))))
    return sorted(names)


def _conflict_message(d: DesiredObject, exc: KubeError, managers: list[str], *, new: bool = False) -> str:
    fields = sorted({str(c.get("field", "")) for c in exc.details.get("causes") or [] if c.get("field")})
    owned = (
        f"{d.kind} {d.namespace}/{d.name}: fields {', '.join(fields) or '(some)'} are owned by "
        f"{', '.join(managers) or 'another manager'}"
    )
    if new:
        return (
            f"{owned}: it was created by someone else after this cluster was listed and is left alone "
            "— rename the policy's object or rerun with --adopt to take it over"
        )
    return f"{owned}; not taken over because of --no-force"


def _stand_in(d: DesiredObject) -> dict[str, Any]:
    """The object as an apply would leave it, without asking a server (ours alone, no defaults)."""
    meta = {
        **d.body["metadata"],
        "managedFields": [
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": declared_fields(d.body)}
        ],
    }
    return {**d.body, "metadata": meta}


def _key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(meta.get("namespace", "")), str(meta.get("name", "")))


def defined_hosts(body: Mapping[str, Any]) -> set[str]:
    """Hosts a ServiceEntry or DestinationRule defines (what a route to them needs to exist)."""
    spec = body.get("spec") or {}
    if body.get("kind") == "ServiceEntry":
        return {str(h) for h in spec.get("hosts") or []}
    if body.get("kind") == "DestinationRule" and spec.get("host"):
        return {str(spec["host"])}
    return set()


def _note_routes(routes: dict[str, str], vs: Mapping[str, Any] | None) -> None:
    if vs is None:
        return
    meta = vs.get("metadata") or {}
    for host in routed_hosts(vs):
        routes.setdefault(host, f"VirtualService {meta.get('namespace', '')}/{meta.get('name', '')}")


def routed_hosts(body: Mapping[str, Any]) -> set[str]:
    """Destination hosts of a VirtualService's routes (http, tcp and tls)."""
    if body.get("kind") != "VirtualService":
        return set()
    spec = body.get("spec") or {}
    hosts = set()
    for section in ("http", "tcp", "tls"):
        for rule in spec.get(section) or []:
            for route in rule.get("route") or []:
                host = (route.get("destination") or {}).get("host")
                if host:
                    hosts.add(str(host))
            mirror = (rule.get("mirror") or {}).get("host") if section == "http" else None
            if mirror:
                hosts.add(str(mirror))
    return hosts


def _strip_ours(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as it was before our (dry-run) apply: drop our managedFields entry."""
    meta = dict(obj.get("metadata") or {})
    meta["managedFields"] = [m for m in meta.get("managedFields") or [] if m.get("manager") != FIELD_MANAGER]
    return {**obj, "metadata": meta}
