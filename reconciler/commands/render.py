"""``render`` (the Istio objects, per cluster) and ``explain`` (Envoy's priorities for a client)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands import options as opt
from reconciler.commands.common import client_locality, open_plan
from reconciler.errors import ExitCode
from reconciler.output import (
    OutputFormat,
    print_cluster_problems,
    print_explain,
    print_findings,
    print_rendered,
    stderr_console,
)


def render(
    path: opt.PathArg = Path("."),
    state: opt.StateOpt = None,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    cluster: Annotated[
        list[str] | None, typer.Option("--cluster", help="Only this cluster (repeatable).")
    ] = None,
    output: opt.OutputOpt = OutputFormat.YAML,
) -> None:
    """Print the Istio objects the policies translate to, grouped by cluster.

    Exit codes: 0 rendered, 1 some policy invalid or cluster unreachable (the rest is printed), 2 fatal.
    """
    settings = opt.make_settings(
        opt.ClusterOptions(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, request_timeout=request_timeout
        )
    )
    with open_plan(path, settings, state) as (plan, _):
        failed_clusters = print_cluster_problems(plan.inventory)
        print_findings(stderr_console(), plan.findings)
        wanted = set(cluster or plan.translation.objects)
        groups = {
            c: [o.body for o in objs] for c, objs in sorted(plan.translation.objects.items()) if c in wanted
        }
        print_rendered(groups, output)
        bad = any(f.is_error for f in plan.findings) or failed_clusters
    raise typer.Exit(ExitCode.DEGRADED if bad else ExitCode.OK)


def explain(
    virtual_destination: opt.VirtualDestinationArg,
    path: opt.PathArg = Path("."),
    from_: opt.FromOpt = "",
    failed: Annotated[
        list[str] | None,
        typer.Option(
            "--failed", help="Treat these endpoints as ejected: a CLUSTER or a LOCALITY (repeatable)."
        ),
    ] = None,
    cluster: opt.ClientClusterOpt = None,
    state: opt.StateOpt = None,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    output: opt.OutputOpt = OutputFormat.TEXT,
) -> None:
    """Show the priority levels Envoy uses for a VirtualDestination, for a client in a locality.

    Exit codes: 0 explained, 2 cannot explain (unknown VirtualDestination, invalid policy, no such locality).
    """
    client = client_locality(from_)
    settings = opt.make_settings(
        opt.ClusterOptions(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, request_timeout=request_timeout
        )
    )
    with open_plan(path, settings, state) as (plan, _):
        print_cluster_problems(plan.inventory)
        from reconciler.dataplane.explain import explain_for  # lazy: start-up cost of other commands

        result = explain_for(plan, virtual_destination, client, cluster, failed or [])
        print_explain(result, failed or [], output)
