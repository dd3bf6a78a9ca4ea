"""The driver: one place that runs the pipeline, for ``reconcile``, ``serve`` and ``diff``.

    source (git)  ->  plan (load, discover, translate)  ->  [Lease]  ->  sync  ->  status  ->  commit

:func:`run_pass` is the middle (plan, Lease, sync) over a policy directory — the same whether it came
from a clone, a CronJob volume or a developer's working tree; :func:`reconcile_once` adds the git
fetch before it and the status commit after it. Settings become stage options here and nowhere
else (:func:`cluster_source`, :func:`sync_options`, :func:`lease_settings`), so ``diff`` and
``reconcile`` can never disagree about ``--adopt``, ``--force`` or prune settings. Exit codes:
:class:`reconciler.errors.ExitCode`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.buildcache import BuildCache
from reconciler.clusters.kube import KubeClient
from reconciler.clusters.targets import client_loaded, preload_client
from reconciler.clusters.watch import WatchCaches
from reconciler.engine.changeset import Action, ChangeSet
from reconciler.engine.lease import LeaseHeld, LeaseSettings, RunLease
from reconciler.engine.sync import SyncOptions, sync
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.findings import ObjectKey
from reconciler.plan import ClusterSource, Connection, Plan, build_plan, connect_clusters
from reconciler.repo_config import RepoConfig, load_repo_config, repo_subdir
from reconciler.settings import DEFAULT_TOKEN_ENV, Settings
from reconciler.shard import Shard, ShardError, resolve_shard
from reconciler.status import (
    RenderMemo,
    build_status,
    read_status_dir,
    report_keys,
    status_commit_message,
    status_fingerprints,
    status_summary,
    write_status_dir,
)
from reconciler.status.results import (
    merge_results,
    read_cluster_results,
    remove_cluster_results,
    write_cluster_results,
)

if TYPE_CHECKING:
    from reconciler.source import Checkout, GitAuth

log = logging.getLogger("reconciler")


# --------------------------------------------------------------------------------------------------
# settings -> stage options (the only place)


def cluster_source(effective: Settings, state: Path | None = None, keep_raw: bool = False) -> ClusterSource:
    """Where live state comes from; the listed objects are kept as listed when the status snapshot
    exports them (or ``keep_raw``: e.g. ``impact`` plans its base from the head's)."""
    return ClusterSource(
        state=state,
        kubeconfigs=list(effective.kubeconfig),
        contexts=list(effective.context),
        in_cluster=effective.in_cluster,
        request_timeout=effective.request_timeout,
        keep_raw=keep_raw or bool(effective.status_snapshot),
    )


def sync_options(effective: Settings, *, apply: bool) -> SyncOptions:
    """The engine's options from resolved settings (``apply=False``: ``diff``, same decisions)."""
    assert effective.max_prune_ratio is not None, "resolve the settings against reconciler.yaml first"
    return SyncOptions(
        apply=apply,
        dry_run=effective.dry_run,
        force=effective.force,
        prune=bool(effective.prune),
        adopt=effective.adopt,
        max_prune_ratio=effective.max_prune_ratio,
        allow_mass_prune=effective.allow_mass_prune,
    )


def lease_settings(effective: Settings, shard: Shard | None = None) -> LeaseSettings:
    """The run Lease; a shard has its own (``mesh-reconciler-shard-1-of-3``), so shards never wait
    for each other while two runs of the same shard still exclude each other."""
    return LeaseSettings(
        name=shard.lease_name(effective.lease_name) if shard is not None else effective.lease_name,
        namespace=effective.lease_namespace,
        duration=effective.lease_duration,
        cluster=effective.lease_cluster,
    )


def shard_of(effective: Settings, environ: Mapping[str, str] | None = None) -> Shard | None:
    """This process's shard (``--shard``, else ``--shard-count`` + ``JOB_COMPLETION_INDEX``), or
    None for an unsharded run. Raises :class:`ShardError` for an unusable combination."""
    return resolve_shard(effective.shard, effective.shard_count, os.environ if environ is None else environ)


def shard_sync_options(options: SyncOptions, shard: Shard | None, clusters: list[str]) -> SyncOptions:
    """A shard compares, writes and prunes only the clusters it owns (the others are read only)."""
    if shard is None:
        return options
    owned = set(shard.select(clusters))  # may be empty: a shard that owns nothing writes nothing
    if options.cluster_filter is not None:
        owned &= options.cluster_filter
    return dataclasses.replace(options, cluster_filter=owned)


# --------------------------------------------------------------------------------------------------
# plan -> Lease -> sync


@dataclass
class PassResult:
    plan: Plan
    changes: ChangeSet
    seconds: float
    lease_cluster: str | None = None
    errors: list[str] = field(default_factory=list)
    """Run-level problems outside any cluster's change set (e.g. the Lease could not be released)."""
    shard: Shard | None = None
    owned: list[str] | None = None
    """With a shard: the clusters it owned (compared, written, pruned); None: every cluster."""

    @property
    def invalid(self) -> bool:
        return any(f.is_error for f in self.plan.findings)

    @property
    def failed_clusters(self) -> list[str]:
        return sorted(n for n, r in self.changes.clusters.items() if not r.reachable)

    @property
    def converged(self) -> bool:
        return not self.invalid and not self.changes.has_errors and not self.errors


class LeaseUnavailable(ReconcilerError):
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
    live: WatchCaches | None = None,
    shard: Shard | None = None,
    build_cache: BuildCache | None = None,
) -> PassResult:
    """Plan and sync once. With ``options.apply`` and not ``dry_run``, hold the Lease while writing.

    A writing pass takes the Lease *first* and only then lists live state, so it can never apply a
    plan made before another run's writes. Writing stops at once (remaining objects are held) when
    the Lease is lost or ``cancel`` is set (a ``serve`` worker shutting down). The plan's API
    clients are closed when the pass returns (its data stays usable for status and output).

    ``live`` (``serve`` only): watch caches kept across passes. Clusters whose cache is synced are
    planned from it (no LIST); the others are LISTed. A cluster this pass wrote to is LISTed by the
    next pass (see :meth:`WatchCaches.wrote`).

    ``build_cache``: see :func:`reconciler.plan.build_plan`.

    ``shard``: discover and translate the whole fleet (translation needs every cluster's services
    and localities) but compare, write and prune only the clusters the shard owns; ``lease`` is then
    the shard's own Lease (see :func:`lease_settings`).
    """
    if shard is not None and shard.single:
        shard = None
    start = time.monotonic()
    if live is not None and source.state is not None:
        live = None  # live state from a snapshot directory: nothing to watch
    if (not options.apply or options.dry_run) and live is None:
        with build_plan(root, source, build_cache=build_cache) as plan:
            changes = sync(plan.desired(), plan.clients, _for_shard(options, shard, plan))
        return _result(plan, changes, start, shard)
    repo, _ = load_repo_config(root)
    connection = connect_clusters(source, repo)
    if not options.apply or options.dry_run:
        if live is not None:
            live.ensure(connection.targets)
        with build_plan(root, source, connection, _snapshot(live), build_cache) as plan:
            changes = sync(plan.desired(), plan.clients, _for_shard(options, shard, plan))
        return _result(plan, changes, start, shard)
    lease = lease or LeaseSettings()
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

            # After the Lease, like a LIST would be: a cache started now LISTs after the Lease, and
            # a running one has every event seen so far.
            if live is not None:
                live.ensure(connection.targets)
            plan = build_plan(root, source, connection, _snapshot(live), build_cache)
            synced: ChangeSet | None = None
            try:
                changes = synced = sync(
                    plan.desired(), plan.clients, _for_shard(options, shard, plan), stop=stop_reason
                )
            finally:
                if live is not None:
                    for name in plan.inventory.clusters:
                        if synced is None or _may_have_written(synced, name):
                            live.wrote(name)
    finally:
        connection.close()  # the plan's clients too, once the Lease is released with one of them
    result = _result(plan, changes, start, shard, lease_cluster=cluster)
    if run_lease.release_error:
        result.errors.append(run_lease.release_error)
    if run_lease.lost.is_set():
        result.errors.append(
            "the run Lease was taken by another run while this one was applying; writing stopped"
        )
    if cancel is not None and cancel.is_set():
        result.errors.append("the pass was cancelled (worker shutting down); writing stopped")
    return result


def _for_shard(options: SyncOptions, shard: Shard | None, plan: Plan) -> SyncOptions:
    return shard_sync_options(options, shard, list(plan.inventory.clusters))


def _result(
    plan: Plan, changes: ChangeSet, start: float, shard: Shard | None, lease_cluster: str | None = None
) -> PassResult:
    owned = shard.select(plan.inventory.clusters) if shard is not None else None
    return PassResult(
        plan, changes, time.monotonic() - start, lease_cluster=lease_cluster, shard=shard, owned=owned
    )


def _snapshot(live: WatchCaches | None) -> dict[str, list[dict[str, Any]] | None] | None:
    return live.snapshot() if live is not None else None


def _may_have_written(changes: ChangeSet, cluster: str) -> bool:
    """Did the pass write to ``cluster``? A failed write counts: it may have reached the server."""
    writes = (Action.CREATE, Action.CONFIGURE, Action.PRUNE, Action.FAILED)
    return any(c.action in writes for c in changes.all() if c.cluster == cluster)


# --------------------------------------------------------------------------------------------------
# source -> run_pass -> status -> commit


@dataclass
class ReconcileOutcome:
    exit_code: int
    error: str = ""
    checkout: Checkout | None = None
    result: PassResult | None = None
    status: Mapping[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    status_commit: str | None = None
    status_changed: bool = False
    seconds: float = 0.0

    @property
    def fatal(self) -> bool:
        return self.exit_code == ExitCode.FATAL


def unexpected_error(exc: BaseException) -> str:
    """The one line a user sees for an exception we did not foresee (the traceback goes to debug)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"unexpected {type(exc).__name__}{': ' + text if text else ''} — this is a bug in mesh-reconciler; "
        "rerun with --log-level debug (RECONCILER_LOG_LEVEL=debug) for the traceback"
    )


def git_auth(settings: Settings) -> GitAuth:
    from reconciler.source import GitAuth  # git only for the passes that use it (start-up cost)

    token_env: str | None = settings.git_token_env or None
    if token_env == DEFAULT_TOKEN_ENV and not os.environ.get(token_env):
        token_env = None  # the default name is only used when set; a name given explicitly must be set
    return GitAuth(
        token_env=token_env,
        token_file=Path(settings.git_token_file) if settings.git_token_file else None,
        username=settings.git_username,
        ssh_key_file=Path(settings.ssh_key_file) if settings.ssh_key_file else None,
        known_hosts_file=Path(settings.known_hosts_file) if settings.known_hosts_file else None,
        strict_host_key_checking=settings.ssh_strict_host_key_checking,
    )


def reconcile_once(
    settings: Settings, cancel: threading.Event | None = None, live: WatchCaches | None = None
) -> ReconcileOutcome:
    """One full pass. ``cancel`` (set by a ``serve`` worker shutting down) stops writing at once;
    ``live``: a ``serve`` worker's watch caches (see :func:`run_pass`)."""
    start = time.monotonic()
    try:
        outcome = _reconcile(settings, cancel, live)
    except Exception as exc:  # a bug, or a failure nobody foresaw: fatal, never "degraded"
        log.debug("unexpected error during the pass", exc_info=True)
        outcome = ReconcileOutcome(ExitCode.FATAL, unexpected_error(exc))
    outcome.seconds = time.monotonic() - start
    return outcome


def _status_dir_rel(subdir: str, status_path: str) -> str:
    return repo_subdir(status_path, parent=subdir)


def with_status_snapshot(
    regenerate: Callable[[Path], bool], effective: Settings, plan: Plan, subdir: str
) -> Callable[[Path], bool]:
    """``regenerate`` plus, when ``status_snapshot`` is on, the live state this pass planned from in
    ``<status>/snapshot/`` (``reconciler.clusters.snapshot.export_snapshot``: no Secrets, bounded),
    so pull-request CI can run ``reconciler impact --state`` on it without cluster credentials."""
    if not effective.status_snapshot or plan.discovery is None or effective.status_path is None:
        return regenerate
    from reconciler.clusters.snapshot import EXPORT_DIR, export_snapshot

    raw = plan.discovery.raw
    unreachable = frozenset(n for n, st in plan.inventory.clusters.items() if not st.reachable)
    rel = _status_dir_rel(subdir, effective.status_path)

    def write(worktree: Path) -> bool:
        changed = regenerate(worktree)
        directory = worktree / rel / EXPORT_DIR
        if not directory.resolve().is_relative_to(worktree.resolve()):  # a symlink in the repository
            log.warning("live-state snapshot not written: %s leads outside the repository", directory)
            return changed
        wrote, warning = export_snapshot(directory, raw, keep=unreachable)
        if warning:
            log.warning("%s", warning)
        return wrote or changed

    return write


def build_cache_for(checkout: Checkout, path: str) -> BuildCache | None:
    """The build cache of a cache clone, keyed by the policy commit (None: not a cache clone)."""
    private = checkout.private_dir
    if private is None:
        return None
    return BuildCache(
        private,
        f"{checkout.policy_commit}:{path}",
        checkout.path / checkout.status_dir,
        label=f"policy commit {checkout.short_policy_commit}"
        + (f" ({path})" if path not in ("", ".") else ""),
    )


def _fetch(settings: Settings) -> Checkout:
    """The source stage: the policy repository fetched into the pass's cache clone."""
    from reconciler.source import fetch  # see git_auth

    # The repository's reconciler.yaml is only known after the fetch; status_dir (which our own
    # commits touch) defaults to the usual one so they never count as policy changes.
    return fetch(
        settings.repo,
        settings.cache_for_repo(),
        branch=settings.branch,
        revision=settings.revision,
        auth=git_auth(settings),
        status_dir=_status_dir_rel(settings.path, settings.status_path or "status"),
    )


def _fetch_while_loading_client(settings: Settings) -> Checkout:
    """:func:`_fetch`, while this thread imports the kubernetes client's kubeconfig loader (~85 ms
    of CPU), which the pass needs next: git works in processes of its own, so a CronJob's pass (an
    empty cache: a clone, ~11 git commands) overlaps the two.

    The GIL is handed over every 0.5 ms meanwhile (not 5): the fetch thread mostly waits for a git
    process, and each wait would otherwise end only when the import next yields. Only while there
    is something to import: a process's first pass, not ``serve``'s later ones.
    """
    if client_loaded():
        return _fetch(settings)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fetch") as pool:
            fetching = pool.submit(_fetch, settings)
            preload_client()
            return fetching.result()
    finally:
        sys.setswitchinterval(interval)


def _reconcile(
    settings: Settings, cancel: threading.Event | None, live: WatchCaches | None = None
) -> ReconcileOutcome:
    if not settings.repo:
        return ReconcileOutcome(
            ExitCode.FATAL, "no policy repository: pass --repo URL|PATH (or RECONCILER_REPO)"
        )
    try:
        shard = shard_of(settings)
    except ShardError as exc:
        return ReconcileOutcome(ExitCode.FATAL, str(exc))
    # 1. source
    try:
        checkout = _fetch_while_loading_client(settings)
    except ReconcilerError as exc:  # a SourceError: every failure of the fetch is one
        return ReconcileOutcome(ExitCode.FATAL, f"git: {exc}")
    from reconciler.source import SourceError, commit_status  # see git_auth (imported by _fetch)

    root = checkout.path / settings.path
    if not root.is_dir():
        return ReconcileOutcome(
            ExitCode.FATAL, f"--path {settings.path} does not exist in {checkout.sha[:12]}", checkout
        )
    repo_config, _ = load_repo_config(root)
    effective = settings.resolved(repo_config)
    assert effective.status_path is not None and effective.max_prune_ratio is not None
    log.info(
        "reconciling %s at %s (policy commit %s)%s",
        checkout.url,
        checkout.sha[:12],
        checkout.policy_commit[:12],
        f" as shard {shard}" if shard is not None else "",
    )

    # 2. plan + sync
    try:
        result = run_pass(
            root,
            cluster_source(effective),
            sync_options(effective, apply=True),
            lease_settings(effective, shard),
            cancel=cancel,
            live=live,
            shard=shard,
            build_cache=build_cache_for(checkout, settings.path),
        )
    except LeaseHeld as exc:
        return ReconcileOutcome(ExitCode.FATAL, f"lock held: {exc}", checkout)
    except (ReconcilerError, OSError) as exc:
        return ReconcileOutcome(ExitCode.FATAL, str(exc), checkout)
    plan = result.plan
    if cancel is not None and cancel.is_set():
        # Half a pass must not be committed as the state of the fleet; the next pass redoes it.
        return ReconcileOutcome(
            ExitCode.FATAL, "pass cancelled (worker shutting down); status not committed", checkout, result
        )

    # 3. status (it reads of our live objects only what istiod wrote, and of the desired objects
    # only those of held changes, see _held_by_unreachable: the rest is released first). Not for a
    # shard: its reports are rebuilt from every shard's records, held changes of any cluster.
    plan.inventory.release_compared()
    if shard is None:
        plan.translation.release_objects(
            (c.cluster, c.kind, c.namespace, c.name) for c in result.changes.all() if c.action is Action.HELD
        )
    status_root_rel = effective.status_path
    private = checkout.private_dir
    memo = RenderMemo.load(private / "status-render.json" if private is not None else None)
    commit = checkout.policy_commit
    # Reports whose inputs are those of the pass that wrote them, untouched since, are reused as
    # they are; only the others are built (one drifted object: the reports of its policies).
    keys = report_keys(plan.policies)
    fingerprints = (
        status_fingerprints(
            plan.build_key,
            keys,
            result.changes,
            plan.inventory,
            commit,
            effective.dry_run,
        )
        if plan.build_key and shard is None
        else {}
    )
    reused = memo.reusable(fingerprints, root, status_root_rel)

    def sharded_docs(base: Path) -> dict[ObjectKey, dict[str, Any]]:
        merged = merge_results(
            result.changes,
            result.owned or (),
            read_cluster_results(base, status_root_rel),
            plan.inventory.clusters,
            commit,
        )
        # No inventory: each cluster's reachability is as its own shard saw it (from its record).
        previous = read_status_dir(root, status_root_rel, memo, carried=True)
        return build_status(
            plan.policies, plan.translation, merged, None, commit, previous, dry_run=effective.dry_run
        )

    if shard is None:
        rebuild = [k for k in keys if k not in reused]
        log.debug("status: %d reports reused (same inputs), %d built", len(reused), len(rebuild))
        previous = read_status_dir(root, status_root_rel, memo, only=rebuild, carried=True) if rebuild else {}
        built = build_status(
            plan.policies,
            plan.translation,
            result.changes,
            plan.inventory,
            commit,
            previous,
            dry_run=effective.dry_run,
            only=rebuild,
        )
        docs: Mapping[ObjectKey, dict[str, Any]] = reused.with_built(built)
    else:
        docs = {}  # built by regenerate, from every cluster's record in the worktree it writes
    # A policy FAILED only in its status (istiod's analysis rejects what we applied) is degraded too.
    failed_in_status = bool(docs) and status_summary(docs)[2] > 0
    outcome = ReconcileOutcome(
        ExitCode.OK if result.converged and not failed_in_status else ExitCode.DEGRADED,
        checkout=checkout,
        result=result,
        status=docs,
    )
    if result.errors:
        outcome.error = "; ".join(result.errors)

    def regenerate(worktree: Path) -> bool:
        base = worktree / settings.path
        if shard is None:  # the whole fleet: no shard's records are needed (nor kept)
            changed = write_status_dir(base, status_root_rel, docs, commit, memo, fingerprints)
            return remove_cluster_results(base, status_root_rel) or changed
        # Sharded: the reports are rebuilt from every cluster's record — this shard's fresh ones and
        # the others' as they are in this worktree (after a lost push race: the winner's commit).
        outcome.status = sharded_docs(base)
        changed = False
        if not effective.dry_run:
            mine = {n: r for n, r in result.changes.clusters.items() if n in (result.owned or ())}
            fleet = list(plan.inventory.clusters)
            changed = write_cluster_results(base, status_root_rel, mine, commit, fleet)
        return write_status_dir(base, status_root_rel, outcome.status, commit, memo) or changed

    write_status = with_status_snapshot(regenerate, effective, plan, settings.path)
    if not effective.commit or effective.dry_run:
        outcome.status_changed = write_status(checkout.path)
        return outcome
    try:
        outcome.status_commit = commit_status(
            checkout,
            _status_dir_rel(settings.path, status_root_rel),
            message=lambda: status_commit_message(outcome.status, commit),
            author_name=effective.author_name,
            author_email=effective.author_email,
            status_branch=effective.status_branch,
            regenerate=write_status,
            # Each rejected push is another writer's success: with N shards racing, the last one may
            # lose N-1 times before its push lands.
            max_attempts=3 if shard is None else max(3, shard.count + 2),
        )
        outcome.status_changed = outcome.status_commit is not None
    except SourceError as exc:
        outcome.exit_code = ExitCode.FATAL
        outcome.error = f"git: status commit failed: {exc}"
    return outcome
