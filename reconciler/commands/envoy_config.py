"""``envoy-config``: the Envoy bootstrap a client sidecar in a locality gets from what we render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands import options as opt
from reconciler.commands.common import client_locality, fail, open_plan
from reconciler.dataplane import DEFAULT_ADMIN_PORT, DEFAULT_LISTENER_PORT
from reconciler.output import BootstrapFormat, print_bootstrap, print_cluster_problems
from reconciler.policy.durations import parse_duration


def envoy_config(
    virtual_destination: opt.VirtualDestinationArg,
    path: opt.PathArg = Path("."),
    from_: opt.FromOpt = "",
    cluster: opt.ClientClusterOpt = None,
    state: opt.StateOpt = None,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    listener_port: Annotated[
        int, typer.Option("--listener-port", help="Port of the HTTP listener on 127.0.0.1.", min=1, max=65535)
    ] = DEFAULT_LISTENER_PORT,
    admin_port: Annotated[
        int, typer.Option("--admin-port", help="Port of the admin interface on 127.0.0.1.", min=1, max=65535)
    ] = DEFAULT_ADMIN_PORT,
    update_merge_window: Annotated[
        str | None,
        typer.Option(
            "--update-merge-window",
            help="Set Envoy's update_merge_window (e.g. 0s). Istio leaves Envoy's 1s default; "
            "change it only for timing tests.",
        ),
    ] = None,
    outlier_log: Annotated[
        str | None,
        typer.Option("--outlier-log", help="File for Envoy's outlier ejection events (JSON lines)."),
    ] = None,
    output: Annotated[
        BootstrapFormat, typer.Option("--output", "-o", help="Output format.")
    ] = BootstrapFormat.YAML,
) -> None:
    """Print the Envoy bootstrap of a client sidecar in a locality, for one VirtualDestination.

    Its cluster holds the rendered ServiceEntry's endpoints at the priorities `reconciler explain`
    shows, with the DestinationRule's outlier detection as istiod translates it.

    Exit codes: 0 printed, 2 cannot build (unknown VirtualDestination, invalid policy, no such locality).
    """
    client = client_locality(from_)
    if update_merge_window is not None:
        try:
            parse_duration(update_merge_window)
        except ValueError as exc:
            fail(f"--update-merge-window: {exc}")
    settings = opt.make_settings(
        opt.ClusterOptions(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, request_timeout=request_timeout
        )
    )
    with open_plan(path, settings, state) as (plan, _):
        print_cluster_problems(plan.inventory)
        try:
            from reconciler.dataplane.envoy import build_bootstrap  # lazy: start-up cost of other commands
            from reconciler.dataplane.explain import explain_for

            result = explain_for(plan, virtual_destination, client, cluster)
            bootstrap = build_bootstrap(
                result,
                listener_port=listener_port,
                admin_port=admin_port,
                update_merge_window=update_merge_window,
                outlier_event_log=outlier_log,
            )
        except ValueError as exc:
            fail(str(exc))
        print_bootstrap(result, bootstrap, output)
