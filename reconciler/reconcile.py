"""The full pass: source -> plan -> sync -> status -> commit, as ``reconcile`` and ``serve`` run it.

Exit codes (stable; the CronJob and CI act on them):

====  =====================================================================================
0     converged: every policy valid and applied in every target cluster
1     degraded: some policy invalid, some object rejected, or some cluster unreachable
      (everything else was reconciled)
2     fatal: nothing was applied — bad configuration, git fetch/push failure, the run Lease is
      held by another run, or the management cluster is unreachable
====  =====================================================================================
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.clusters.snapshot import SnapshotError
from reconciler.clusters.targets import TargetError
from reconciler.engine.lease import LeaseError, LeaseHeld
from reconciler.engine.run import LeaseSettings, LeaseUnavailable, PassResult, run_pass
from reconciler.engine.sync import SyncOptions
from reconciler.findings import ObjectKey
from reconciler.plan import ClusterSource
from reconciler.repo_config import load_repo_config
from reconciler.settings import DEFAULT_TOKEN_ENV, Settings
from reconciler.source import Checkout, GitAuth, SourceError, commit_status, fetch
from reconciler.status import build_status, read_status_dir, status_commit_message, write_status_dir

log = logging.getLogger("reconciler")

EXIT_CONVERGED = 0
EXIT_DEGRADED = 1
EXIT_FATAL = 2


@dataclass
class ReconcileOutcome:
    exit_code: int
    error: str = ""
    checkout: Checkout | None = None
    result: PassResult | None = None
    status: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    status_commit: str | None = None
    status_changed: bool = False
    seconds: float = 0.0

    @property
    def fatal(self) -> bool:
        return self.exit_code == EXIT_FATAL


def unexpected_error(exc: BaseException) -> str:
    """The one line a user sees for an exception we did not foresee (the traceback goes to debug)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return (
        f"unexpected {type(exc).__name__}{': ' + text if text else ''} — this is a bug in mesh-reconciler; "
        "rerun with --log-level debug (RECONCILER_LOG_LEVEL=debug) for the traceback"
    )


def git_auth(settings: Settings) -> GitAuth:
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


def reconcile_once(settings: Settings, cancel: threading.Event | None = None) -> ReconcileOutcome:
    """One full pass. ``cancel`` (set by a ``serve`` worker shutting down) stops writing at once."""
    start = time.monotonic()
    try:
        outcome = _reconcile(settings, cancel)
    except Exception as exc:  # a bug, or a failure nobody foresaw: fatal, never "degraded"
        log.debug("unexpected error during the pass", exc_info=True)
        outcome = ReconcileOutcome(EXIT_FATAL, unexpected_error(exc))
    outcome.seconds = time.monotonic() - start
    return outcome


def _status_dir_rel(subdir: str, status_path: str) -> str:
    rel = (Path(subdir) / status_path).as_posix()
    return rel[2:] if rel.startswith("./") else rel


def _reconcile(settings: Settings, cancel: threading.Event | None) -> ReconcileOutcome:
    if not settings.repo:
        return ReconcileOutcome(EXIT_FATAL, "no policy repository: pass --repo URL|PATH (or RECONCILER_REPO)")
    # 1. source. The repository's reconciler.yaml is only known after the fetch; status_dir (which
    # our own commits touch) defaults to the usual one so they never count as policy changes.
    try:
        checkout = fetch(
            settings.repo,
            settings.cache_for_repo(),
            branch=settings.branch,
            revision=settings.revision,
            auth=git_auth(settings),
            status_dir=_status_dir_rel(settings.path, settings.status_path or "status"),
        )
    except SourceError as exc:
        return ReconcileOutcome(EXIT_FATAL, f"git: {exc}")
    root = checkout.path / settings.path
    if not root.is_dir():
        return ReconcileOutcome(
            EXIT_FATAL, f"--path {settings.path} does not exist in {checkout.sha[:12]}", checkout
        )
    repo_config, _ = load_repo_config(root)
    effective = settings.resolved(repo_config)
    assert effective.status_path is not None and effective.max_prune_ratio is not None
    log.info(
        "reconciling %s at %s (policy commit %s)",
        checkout.url,
        checkout.sha[:12],
        checkout.policy_commit[:12],
    )

    # 2. plan + sync
    source = ClusterSource(
        kubeconfigs=list(effective.kubeconfig),
        contexts=list(effective.context),
        in_cluster=effective.in_cluster,
        request_timeout=effective.request_timeout,
    )
    options = SyncOptions(
        apply=True,
        dry_run=effective.dry_run,
        force=effective.force,
        prune=bool(effective.prune),
        adopt=effective.adopt,
        max_prune_ratio=effective.max_prune_ratio,
        allow_mass_prune=effective.allow_mass_prune,
    )
    lease = LeaseSettings(
        name=effective.lease_name,
        namespace=effective.lease_namespace,
        duration=effective.lease_duration,
        cluster=effective.lease_cluster,
    )
    try:
        result = run_pass(root, source, options, lease, cancel=cancel)
    except (TargetError, SnapshotError, OSError) as exc:
        return ReconcileOutcome(EXIT_FATAL, str(exc), checkout)
    except LeaseHeld as exc:
        return ReconcileOutcome(EXIT_FATAL, f"lock held: {exc}", checkout)
    except (LeaseUnavailable, LeaseError) as exc:
        return ReconcileOutcome(EXIT_FATAL, str(exc), checkout)
    plan = result.plan
    plan.close()
    if cancel is not None and cancel.is_set():
        # Half a pass must not be committed as the state of the fleet; the next pass redoes it.
        return ReconcileOutcome(
            EXIT_FATAL, "pass cancelled (worker shutting down); status not committed", checkout, result
        )

    # 3. status
    status_root_rel = effective.status_path
    previous = read_status_dir(root, status_root_rel)
    docs = build_status(
        plan.policies,
        plan.translation,
        result.changes,
        plan.inventory,
        checkout.policy_commit,
        previous,
        dry_run=effective.dry_run,
    )
    outcome = ReconcileOutcome(
        EXIT_CONVERGED if result.converged else EXIT_DEGRADED, checkout=checkout, result=result, status=docs
    )
    if result.errors:
        outcome.error = "; ".join(result.errors)
    commit = checkout.policy_commit

    def regenerate(worktree: Path) -> bool:
        return write_status_dir(worktree / settings.path, status_root_rel, docs, commit)

    if not effective.commit or effective.dry_run:
        outcome.status_changed = regenerate(checkout.path)
        return outcome
    try:
        outcome.status_commit = commit_status(
            checkout,
            _status_dir_rel(settings.path, status_root_rel),
            message=status_commit_message(docs, commit),
            author_name=effective.author_name,
            author_email=effective.author_email,
            status_branch=effective.status_branch,
            regenerate=regenerate,
        )
        outcome.status_changed = outcome.status_commit is not None
    except SourceError as exc:
        outcome.exit_code = EXIT_FATAL
        outcome.error = f"git: status commit failed: {exc}"
    return outcome
