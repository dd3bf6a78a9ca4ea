"""``diff`` (what reconcile would change), ``reconcile`` (one pass) and ``serve`` (passes on a schedule).

``diff`` and ``reconcile`` take the same apply options and turn them into the engine's options with
the same function (:func:`reconciler.reconcile.sync_options`), so ``diff`` reports exactly the
decisions ``reconcile`` would make (``--adopt``, ``--no-force``, prune settings).
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from reconciler.commands import options as opt
from reconciler.commands.common import fail, open_plan
from reconciler.engine.sync import sync
from reconciler.errors import ExitCode
from reconciler.logs import log_changes, setup_logging
from reconciler.output import (
    DiffFormat,
    OutputFormat,
    print_cluster_problems,
    print_diff,
    print_error,
    print_findings,
    print_reconcile,
    stderr_console,
)
from reconciler.policy.durations import parse_duration
from reconciler.reconcile import reconcile_once, sync_options


def diff(
    path: opt.PathArg = Path("."),
    state: opt.StateOpt = None,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    force: opt.ForceOpt = opt.DEFAULTS.force,
    prune: opt.PruneOpt = None,
    adopt: opt.AdoptOpt = opt.DEFAULTS.adopt,
    max_prune_ratio: opt.MaxPruneRatioOpt = opt.DEFAULTS.max_prune_ratio,
    allow_mass_prune: opt.AllowMassPruneOpt = opt.DEFAULTS.allow_mass_prune,
    build_cache_dir: opt.BuildCacheDirOpt = opt.DEFAULTS.build_cache_dir,
    output: opt.DiffOutputOpt = DiffFormat.TEXT,
) -> None:
    """Show what reconcile would change in every cluster (desired vs live, on the fields we own).

    Takes reconcile's apply options (--adopt, --no-force, --prune, ...) and reconciler.yaml's prune
    settings, so it reports what reconcile would do. Only differing objects cost a request (a
    server-side dry-run apply that confirms them). Exit codes (like kubectl diff): 0 no differences,
    1 differences, 2 error (invalid policy, unreachable cluster, conflict; what could be computed is
    still printed).
    """
    settings = opt.make_settings(
        opt.ClusterOptions(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, request_timeout=request_timeout
        ),
        opt.ApplyOptions(
            dry_run=False,  # diff never writes: --dry-run is reconcile's
            force=force,
            prune=prune,
            adopt=adopt,
            max_prune_ratio=max_prune_ratio,
            allow_mass_prune=allow_mass_prune,
        ),
        opt.BuildOptions(build_cache_dir=build_cache_dir),
    )
    with open_plan(path, settings, state, build_cache=True) as (plan, effective):
        if plan.findings:
            print_findings(stderr_console(), plan.findings)
        failed = print_cluster_problems(plan.inventory)
        # Against a snapshot there is no client: differences are found locally, without confirmation.
        changes = sync(plan.desired(), plan.clients, sync_options(effective, apply=False))
        print_diff(changes, output)
        errors = any(f.is_error for f in plan.findings) or failed or changes.has_errors
    raise typer.Exit(
        ExitCode.FATAL if errors else ExitCode.DEGRADED if changes.has_differences else ExitCode.OK
    )


def reconcile(
    repo: opt.RepoOpt = opt.DEFAULTS.repo,
    branch: opt.BranchOpt = opt.DEFAULTS.branch,
    revision: opt.RevisionOpt = opt.DEFAULTS.revision,
    path: opt.RepoPathOpt = opt.DEFAULTS.path,
    cache_dir: opt.CacheDirOpt = opt.DEFAULTS.cache_dir,
    git_token_env: opt.GitTokenEnvOpt = opt.DEFAULTS.git_token_env,
    git_token_file: opt.GitTokenFileOpt = opt.DEFAULTS.git_token_file,
    ssh_key_file: opt.SshKeyFileOpt = opt.DEFAULTS.ssh_key_file,
    known_hosts_file: opt.KnownHostsFileOpt = opt.DEFAULTS.known_hosts_file,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    dry_run: opt.DryRunOpt = opt.DEFAULTS.dry_run,
    force: opt.ForceOpt = opt.DEFAULTS.force,
    prune: opt.PruneOpt = None,
    adopt: opt.AdoptOpt = opt.DEFAULTS.adopt,
    max_prune_ratio: opt.MaxPruneRatioOpt = opt.DEFAULTS.max_prune_ratio,
    allow_mass_prune: opt.AllowMassPruneOpt = opt.DEFAULTS.allow_mass_prune,
    status_path: opt.StatusPathOpt = opt.DEFAULTS.status_path,
    status_branch: opt.StatusBranchOpt = opt.DEFAULTS.status_branch,
    commit: opt.CommitOpt = opt.DEFAULTS.commit,
    author_name: opt.AuthorNameOpt = opt.DEFAULTS.author_name,
    author_email: opt.AuthorEmailOpt = opt.DEFAULTS.author_email,
    status_snapshot: opt.StatusSnapshotOpt = None,
    lease_cluster: opt.LeaseClusterOpt = opt.DEFAULTS.lease_cluster,
    lease_namespace: opt.LeaseNamespaceOpt = opt.DEFAULTS.lease_namespace,
    shard: opt.ShardOpt = opt.DEFAULTS.shard,
    shard_count: opt.ShardCountOpt = opt.DEFAULTS.shard_count,
    log_format: opt.LogFormatOpt = opt.DEFAULTS.log_format,
    log_level: opt.LogLevelOpt = opt.DEFAULTS.log_level,
    output: opt.OutputOpt = OutputFormat.TEXT,
) -> None:
    """Pull the policy repository, apply it to every cluster, commit status back.

    Exit codes: 0 converged, 1 degraded (invalid policies, rejected objects or unreachable
    clusters; the rest was reconciled), 2 fatal (configuration, git, lock held; nothing applied).
    """
    settings = opt.pass_settings(locals(), not_settings=("output",))
    setup_logging(settings.log_format, settings.log_level)
    outcome = reconcile_once(settings)
    if outcome.result is not None:
        if outcome.result.plan.findings:  # (no console, no rich import, for a clean pass)
            print_findings(stderr_console(), outcome.result.plan.findings)
        log_changes(outcome.result.changes)
    print_reconcile(outcome, output)
    if outcome.error:
        print_error(outcome.error)
    raise typer.Exit(outcome.exit_code)


def serve(
    repo: opt.RepoOpt = opt.DEFAULTS.repo,
    branch: opt.BranchOpt = opt.DEFAULTS.branch,
    revision: opt.RevisionOpt = opt.DEFAULTS.revision,
    path: opt.RepoPathOpt = opt.DEFAULTS.path,
    cache_dir: opt.CacheDirOpt = opt.DEFAULTS.cache_dir,
    git_token_env: opt.GitTokenEnvOpt = opt.DEFAULTS.git_token_env,
    git_token_file: opt.GitTokenFileOpt = opt.DEFAULTS.git_token_file,
    ssh_key_file: opt.SshKeyFileOpt = opt.DEFAULTS.ssh_key_file,
    known_hosts_file: opt.KnownHostsFileOpt = opt.DEFAULTS.known_hosts_file,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    dry_run: opt.DryRunOpt = opt.DEFAULTS.dry_run,
    force: opt.ForceOpt = opt.DEFAULTS.force,
    prune: opt.PruneOpt = None,
    adopt: opt.AdoptOpt = opt.DEFAULTS.adopt,
    max_prune_ratio: opt.MaxPruneRatioOpt = opt.DEFAULTS.max_prune_ratio,
    allow_mass_prune: opt.AllowMassPruneOpt = opt.DEFAULTS.allow_mass_prune,
    status_path: opt.StatusPathOpt = opt.DEFAULTS.status_path,
    status_branch: opt.StatusBranchOpt = opt.DEFAULTS.status_branch,
    commit: opt.CommitOpt = opt.DEFAULTS.commit,
    author_name: opt.AuthorNameOpt = opt.DEFAULTS.author_name,
    author_email: opt.AuthorEmailOpt = opt.DEFAULTS.author_email,
    status_snapshot: opt.StatusSnapshotOpt = None,
    lease_cluster: opt.LeaseClusterOpt = opt.DEFAULTS.lease_cluster,
    lease_namespace: opt.LeaseNamespaceOpt = opt.DEFAULTS.lease_namespace,
    shard: opt.ShardOpt = opt.DEFAULTS.shard,
    shard_count: opt.ShardCountOpt = opt.DEFAULTS.shard_count,
    log_format: opt.LogFormatOpt = opt.DEFAULTS.log_format,
    log_level: opt.LogLevelOpt = opt.DEFAULTS.log_level,
    interval: opt.IntervalOpt = None,
    cron: opt.CronOpt = None,
    listen_address: opt.ListenAddressOpt = "127.0.0.1",
    port: opt.PortOpt = 9090,
    shutdown_grace: opt.ShutdownGraceOpt = 60.0,
) -> None:
    """Run the reconcile pass on a schedule; serve /healthz, /readyz and /metrics.

    Never two passes at once; SIGTERM finishes (or, after --shutdown-grace, abandons) the running
    pass and exits 0. Same options, environment variables and per-pass semantics as `reconcile`;
    the process exits 0 on a clean shutdown and 2 on bad configuration.
    """
    settings = opt.pass_settings(
        locals(), not_settings=("interval", "cron", "listen_address", "port", "shutdown_grace")
    )
    setup_logging(settings.log_format, settings.log_level)
    from reconciler.serve import Worker, trigger  # lazy: scheduler and metrics only for serve
    from reconciler.serve import serve as run_worker

    try:
        seconds = parse_duration(interval).total_seconds() if interval else None
        trigger(seconds, cron)
    except ValueError as exc:
        fail(str(exc))
    from reconciler.clusters.watch import WatchCaches

    worker = Worker(settings, live=WatchCaches(timeout=settings.request_timeout))
    try:
        code = run_worker(
            worker,
            interval=seconds,
            cron=cron,
            address=listen_address,
            port=port,
            shutdown_grace=shutdown_grace,
        )
    except OSError as exc:
        fail(f"cannot listen on {listen_address}:{port}: {exc}")
    if worker.busy:
        os._exit(code)  # the abandoned pass's thread must not keep the process alive
    raise typer.Exit(code)
