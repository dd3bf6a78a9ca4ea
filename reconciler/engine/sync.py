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
import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.clusters.inventory import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCES_ANNOTATION, ClusterState
from reconciler.clusters.kube import FIELD_MANAGER, ISTIO_RESOURCES, KubeClient, KubeError
from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.engine.normalize import (
    changed_paths,
    comparable_desired,
    comparable_live,
    declared_fields,
    field_owners,
    other_managers,
)
from reconciler.findings import ObjectKey
from reconciler.output import to_yaml
from reconciler.plan import Plan
from reconciler.translate import MANAGED_KINDS
from reconciler.translate.result import DesiredObject

log = logging.getLogger(__name__)

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
    workers: int = 4
    cluster_filter: set[str] = field(default_factory=set)


def sources_of(obj: dict[str, Any]) -> tuple[ObjectKey, ...]:
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(SOURCES_ANNOTATION, "")
    out = []
    for ref in text.split(","):
        ref = ref.strip()
        if ref.count("/") >= 2:
            out.append(ObjectKey.parse(ref))
    return tuple(out)


def is_ours(obj: dict[str, Any]) -> bool:
    meta = obj.get("metadata") or {}
    return (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and bool(
        (meta.get("annotations") or {}).get(SOURCES_ANNOTATION)
    )


def protected_policies(plan: Plan) -> set[ObjectKey]:
    """Policies whose existing objects must be kept as they are (failed to load, validate or translate)."""
    out = set(plan.policies.invalid)
    out |= {k for k, o in plan.translation.outcomes.items() if o.blocking}
    return out


def sync(plan: Plan, clients: Mapping[str, KubeClient], options: SyncOptions) -> ChangeSet:
    """Compare (and with ``options.apply``, write) every cluster; clusters without a client (live
    state read from a snapshot) are compared locally, without server confirmation."""
    changes = ChangeSet(dry_run=not options.apply or options.dry_run)
    protected = protected_policies(plan)
    unreachable = {n for n, s in plan.inventory.clusters.items() if not s.reachable}
    suspended = (
        "pruning suspended: these files could not be read, so their objects are unknown: "
        + ", ".join(sorted(set(plan.policies.unreadable_files)))
        if plan.policies.unreadable_files
        else ""
    )
    names = sorted(
        n for n in plan.inventory.clusters if not options.cluster_filter or n in options.cluster_filter
    )
    for name in names:
        state = plan.inventory.clusters[name]
        if not state.reachable:
            changes.clusters[name] = ClusterResult(name, error=state.error)

    def one(name: str) -> ClusterResult:
        state = plan.inventory.clusters[name]
        desired = plan.translation.objects.get(name, [])
        worker = _ClusterSync(state, desired, clients.get(name), options, protected, unreachable, suspended)
        try:
            return worker.run()
        except KubeError as exc:  # the cluster went away mid-run
            log.error("cluster %s failed: %s", name, exc)
            result = worker.result
            result.error = f"failed during sync: {exc}"
            return result

    if options.apply and any(n not in clients for n in names if plan.inventory.clusters[n].reachable):
        raise ValueError(
            "applying needs a client for every reachable cluster (live state came from a snapshot?)"
        )
    todo = [n for n in names if plan.inventory.clusters[n].reachable]
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, min(options.workers, len(todo) or 1))
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
        protected: set[ObjectKey],
        unreachable: set[str],
        suspended: str,
    ) -> None:
        self.state = state
        self.desired = desired
        self.client = client
        self.options = options
        self.protected = protected
        self.unreachable = unreachable
        self.suspended = suspended
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
        live = {
            (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in self.state.managed
        }
        for d in self.desired:
            self._desired(d, live.pop((d.kind, d.namespace, d.name), None))
        self._prune(live)
        return self.result

    # -- create / configure ------------------------------------------------------------------------

    def _desired(self, d: DesiredObject, live: dict[str, Any] | None) -> None:
        waiting = sorted(d.depends_on & self.unreachable)
        if waiting:
            self._change(
                d.body,
                Action.HELD,
                d.sources,
                message=f"kept as it is live: depends on unreachable cluster(s) {', '.join(waiting)}",
            )
            return
        if live is not None:
            bad = [k for k in sources_of(live) if k in self.protected]
            if bad:
                self._change(
                    d.body,
                    Action.HELD,
                    d.sources,
                    message="kept as it is live: source policy "
                    + ", ".join(f"{k}" for k in bad)
                    + " is invalid",
                )
                return
            before = comparable_live(live, declared_fields(d.body))
            if not changed_paths(before, comparable_desired(d.body)):
                self._change(d.body, Action.UNCHANGED, d.sources)
                return
        else:
            before = {}
        previous: list[str] = []
        adopting = False
        try:
            if live is None or not self.options.apply:
                # Confirm with the server (defaults, normalisation) and detect objects that exist
                # without our markers — never overwrite those by accident.
                result, previous = self._dry_run_apply(d)
                if live is None:
                    strangers = other_managers(result)
                    if strangers:
                        if not self.options.adopt:
                            self._change(
                                d.body,
                                Action.CONFLICT,
                                d.sources,
                                previous_managers=strangers,
                                message=(
                                    f"{d.kind} {d.namespace}/{d.name} already exists and is not managed by "
                                    f"mesh-reconciler (managers: {', '.join(strangers)}); it is left alone — "
                                    "rename the policy's object or rerun with --adopt to take it over"
                                ),
                            )
                            return
                        adopting = True
                        previous = sorted(set(previous) | set(strangers))
                        before = comparable_live(_strip_ours(result))
            if self.options.apply:
                result, taken = self._apply(d, force=self.options.force or adopting)
                previous = sorted(set(previous) | set(taken))
        except _Conflict as exc:
            self._change(
                d.body, Action.CONFLICT, d.sources, previous_managers=exc.managers, message=exc.message
            )
            return
        except KubeError as exc:
            self._change(
                d.body, Action.FAILED, d.sources, message=f"{d.kind} {d.namespace}/{d.name}: {exc.message}"
            )
            return
        if live is not None:
            previous = sorted(set(previous) | set(field_owners(live, declared_fields(d.body))))
        after = comparable_live(result, declared_fields(d.body))
        paths = changed_paths(before, after) if live is not None or adopting else ["(new)"]
        if live is not None and not paths:
            self._change(
                d.body, Action.UNCHANGED, d.sources, message="difference normalised away by the API server"
            )
            return
        action = Action.CREATE if live is None and not adopting else Action.CONFIGURE
        self._change(
            d.body,
            action,
            d.sources,
            changed_paths=[] if paths == ["(new)"] else paths,
            diff=unified_diff(before, after, f"{d.kind}/{d.namespace}/{d.name}"),
            previous_managers=previous,
            written=self.options.apply and not self.options.dry_run,
            message="adopted (was not managed by mesh-reconciler)" if adopting else "",
        )

    def _dry_run_apply(self, d: DesiredObject) -> tuple[dict[str, Any], list[str]]:
        """Ask the server what the object would become (one request; conflicts only with --no-force)."""
        if self.client is None:
            # Live state from a snapshot: no server to ask, so the desired object stands for the result.
            meta = {
                **d.body["metadata"],
                "managedFields": [
                    {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": declared_fields(d.body)}
                ],
            }
            return {**d.body, "metadata": meta}, []
        resource = ISTIO_RESOURCES[d.kind]
        force = self.options.force or self.options.adopt
        try:
            result = self.client.apply(resource, d.body, force=force, dry_run=True)
        except KubeError as exc:
            if exc.status != 409:
                raise
            managers = _conflict_managers(exc)
            raise _Conflict(managers, _conflict_message(d, exc, managers)) from None
        return result, []

    def _apply(self, d: DesiredObject, *, force: bool) -> tuple[dict[str, Any], list[str]]:
        assert self.client is not None
        resource = ISTIO_RESOURCES[d.kind]
        try:
            return self.client.apply(resource, d.body, force=False, dry_run=self.options.dry_run), []
        except KubeError as exc:
            if exc.status != 409:
                raise
            managers = _conflict_managers(exc)
            if not force:
                raise _Conflict(managers, _conflict_message(d, exc, managers)) from None
            log.info("%s: taking over fields from %s", d.ref, ", ".join(managers))
            return self.client.apply(resource, d.body, force=True, dry_run=self.options.dry_run), managers

    # -- prune -------------------------------------------------------------------------------------

    def _prune(self, leftovers: dict[tuple[str, str, str], dict[str, Any]]) -> None:
        candidates: list[tuple[dict[str, Any], tuple[ObjectKey, ...]]] = []
        for obj in leftovers.values():
            if not is_ours(obj) or obj["kind"] not in MANAGED_KINDS:
                continue  # label without our annotation: someone else's object, never touched
            sources = sources_of(obj)
            bad = [k for k in sources if k in self.protected]
            if bad:
                self._change(
                    obj,
                    Action.HELD,
                    sources,
                    message="not pruned: source policy " + ", ".join(str(k) for k in bad) + " is invalid",
                )
            elif self.suspended:
                self._change(obj, Action.HELD, sources, message=self.suspended)
            elif not self.options.prune:
                self._change(
                    obj, Action.HELD, sources, message="no longer desired; not pruned (pruning disabled)"
                )
            else:
                candidates.append((obj, sources))
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
        order = {k: i for i, k in enumerate(reversed(MANAGED_KINDS))}  # VirtualServices first
        for obj, sources in sorted(
            candidates,
            key=lambda c: (
                order[c[0]["kind"]],
                c[0]["metadata"].get("namespace", ""),
                c[0]["metadata"]["name"],
            ),
        ):
            diff = unified_diff(
                comparable_live(obj),
                {},
                f"{obj['kind']}/{obj['metadata'].get('namespace')}/{obj['metadata']['name']}",
            )
            if not self.options.apply:
                self._change(obj, Action.PRUNE, sources, diff=diff)
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
                    self._change(obj, Action.PRUNE, sources, diff=diff, message="already gone")
                    continue
                self._change(obj, Action.FAILED, sources, message=f"delete failed: {exc.message}")
                continue
            self._change(obj, Action.PRUNE, sources, diff=diff, written=not self.options.dry_run)


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


def _conflict_message(d: DesiredObject, exc: KubeError, managers: list[str]) -> str:
    fields = sorted({str(c.get("field", "")) for c in exc.details.get("causes") or [] if c.get("field")})
    return (
        f"{d.kind} {d.namespace}/{d.name}: fields {', '.join(fields) or '(some)'} are owned by "
        f"{', '.join(managers) or 'another manager'}; not taken over because of --no-force"
    )


def _strip_ours(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as it was before our (dry-run) apply: drop our managedFields entry."""
    meta = dict(obj.get("metadata") or {})
    meta["managedFields"] = [
        m for m in meta.get("managedFields") or [] if m.get("manager") != "mesh-reconciler"
    ]
    return {**obj, "metadata": meta}


def unified_diff(before: dict[str, Any], after: dict[str, Any], name: str) -> str:
    a = to_yaml(before).splitlines(keepends=True) if before else []
    b = to_yaml(after).splitlines(keepends=True) if after else []
    return "".join(difflib.unified_diff(a, b, f"live/{name}", f"desired/{name}", n=3))
