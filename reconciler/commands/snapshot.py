"""``snapshot``: export the live state discovery reads, for ``--state DIR`` (CI without clusters)."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from reconciler.clusters.discover import discover
from reconciler.clusters.inventory import unavailable
from reconciler.clusters.snapshot import write_snapshot
from reconciler.clusters.targets import resolve_targets
from reconciler.commands import options as opt
from reconciler.commands.common import fail
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.output import print_error, print_written
from reconciler.reconcile import cluster_source
from reconciler.repo_config import RepoConfig, load_repo_config


def snapshot(
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write <cluster>.yaml files into.")
    ],
    path: Annotated[
        Path, typer.Option("--path", help="Policy directory (for reconciler.yaml cluster names).")
    ] = Path("."),
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
) -> None:
    """Export the live state discovery reads, one kubectl-style List per cluster.

    Exit codes: 0 written, 1 some cluster unreachable (the others are written), 2 fatal.
    """
    settings = opt.make_settings(
        opt.ClusterOptions(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, request_timeout=request_timeout
        )
    )
    repo, _ = load_repo_config(path) if path.is_dir() else (RepoConfig(), [])
    source = cluster_source(settings.resolved(repo))
    try:
        targets = resolve_targets(
            repo, kubeconfigs=source.kubeconfigs, contexts=source.contexts, in_cluster=source.in_cluster
        )
        with closing(discover(targets, timeout=source.request_timeout)) as found:
            for name, written in zip(sorted(found.raw), write_snapshot(output_dir, found.raw), strict=True):
                print_written(written, len(found.raw[name]))
    except (ReconcilerError, OSError) as exc:
        fail(str(exc))
    unreachable = [(n, s.error) for n, s in sorted(found.inventory.clusters.items()) if s.error]
    for name, error in unreachable:
        print_error(unavailable(name, error))
    raise typer.Exit(ExitCode.DEGRADED if unreachable else ExitCode.OK)
