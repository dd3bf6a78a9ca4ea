"""``reconciler envoy-config``: the Envoy bootstrap of a client sidecar, from what we render.

Builds the plan exactly like ``explain`` (policies + live state or a snapshot -> rendered objects),
takes the ServiceEntry and DestinationRule of the client's cluster and the priorities istiod would
assign (:func:`reconciler.explain.explain`) and prints :func:`reconciler.envoy.build_bootstrap`'s
result. Run Envoy with it to see, on real traffic, where requests go and how they fail over.

Exit codes: 0 printed, 2 cannot build (unknown or invalid VirtualDestination, unknown locality,
unreadable policy directory or state).
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from reconciler.clusters.snapshot import SnapshotError
from reconciler.clusters.targets import TargetError
from reconciler.envoy import DEFAULT_ADMIN_PORT, DEFAULT_LISTENER_PORT, build_bootstrap, header_comment
from reconciler.explain import ExplainError, client_cluster, explain
from reconciler.locality import Locality
from reconciler.output import stderr_console
from reconciler.plan import ClusterSource, Plan, build_plan
from reconciler.policy import LoadedPolicy, VirtualDestination
from reconciler.policy.durations import parse_duration

EXIT_OK = 0
EXIT_FATAL = 2


class BootstrapFormat(enum.StrEnum):
    YAML = "yaml"
    JSON = "json"


def envoy_config(
    virtual_destination: Annotated[str, typer.Argument(help="VirtualDestination: NAME or NAMESPACE/NAME.")],
    path: Annotated[
        Path, typer.Argument(help="Policy directory (a checkout of the policy repository).")
    ] = Path("."),
    from_: Annotated[str, typer.Option("--from", help="Client locality: REGION[/ZONE[/SUBZONE]].")] = "",
    cluster: Annotated[
        str | None, typer.Option("--cluster", help="Client cluster (default: the one with nodes there).")
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(
            "--state",
            help="Read live state from a snapshot directory (DIR/<cluster>.yaml) instead of clusters.",
        ),
    ] = None,
    context: Annotated[
        list[str] | None,
        typer.Option(
            "--context", help="Kube context to use (repeatable); default: all, or reconciler.yaml's."
        ),
    ] = None,
    kubeconfig: Annotated[
        list[str] | None,
        typer.Option(
            "--kubeconfig", help="Kubeconfig file (repeatable); default: $KUBECONFIG or ~/.kube/config."
        ),
    ] = None,
    in_cluster: Annotated[
        bool, typer.Option("--in-cluster", help="Also use the pod's service account for its own cluster.")
    ] = False,
    request_timeout: Annotated[
        float, typer.Option("--request-timeout", help="Seconds per API request.")
    ] = 10.0,
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
    err = stderr_console()
    client = Locality.parse(from_)
    if client is None:
        err.print("error: --from REGION[/ZONE[/SUBZONE]] is required", markup=False)
        raise typer.Exit(EXIT_FATAL)
    if update_merge_window is not None:
        try:
            parse_duration(update_merge_window)
        except ValueError as exc:
            err.print(f"error: --update-merge-window: {exc}", markup=False)
            raise typer.Exit(EXIT_FATAL) from None
    if not path.is_dir():
        err.print(f"error: {path}: not a readable directory", markup=False)
        raise typer.Exit(EXIT_FATAL)
    source = ClusterSource(
        state=state,
        contexts=list(context or []),
        kubeconfigs=list(kubeconfig or []),
        in_cluster=in_cluster,
        request_timeout=request_timeout,
    )
    try:
        plan = build_plan(path, source)
    except (TargetError, SnapshotError, OSError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    try:
        _report_unreachable(plan)
        vd = _find_virtual_destination(plan, virtual_destination)
        assert isinstance(vd.obj, VirtualDestination)
        localities = {
            name: sorted(st.localities()) for name, st in plan.inventory.clusters.items() if st.reachable
        }
        try:
            where = cluster or client_cluster(plan.translation, localities, client)
            result = explain(plan.translation, vd.key, str(vd.obj.spec.hostname), client, where)
            bootstrap = build_bootstrap(
                result,
                listener_port=listener_port,
                admin_port=admin_port,
                update_merge_window=update_merge_window,
                outlier_event_log=outlier_log,
            )
        except (ExplainError, ValueError) as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(EXIT_FATAL) from None
        if output is BootstrapFormat.JSON:
            typer.echo(json.dumps(bootstrap, indent=2))
        else:
            text = yaml.safe_dump(bootstrap, sort_keys=False, default_flow_style=False, width=100)
            typer.echo(header_comment(result) + text, nl=False)
    finally:
        plan.close()


def _report_unreachable(plan: Plan) -> None:
    err = stderr_console()
    for name, st in sorted(plan.inventory.clusters.items()):
        if st.error:
            err.print(f"warning: cluster {name} (context {st.context}) unreachable: {st.error}", markup=False)


def _find_virtual_destination(plan: Plan, ref: str) -> LoadedPolicy:
    namespace, _, name = ref.rpartition("/")
    found = plan.policies.by_kind("VirtualDestination")
    matches = [p for p in found if p.obj.name == name and (not namespace or p.obj.namespace == namespace)]
    if len(matches) == 1:
        return matches[0]
    err = stderr_console()
    invalid = [k for k in plan.policies.invalid if k.kind == "VirtualDestination" and k.name == name]
    if not matches and invalid:
        err.print(f"error: VirtualDestination {ref} is invalid; run `reconciler validate`", markup=False)
    elif not matches:
        known = ", ".join(f"{p.obj.namespace}/{p.obj.name}" for p in found) or "none"
        err.print(f"error: VirtualDestination {ref} not found (known: {known})", markup=False)
    else:
        err.print(f"error: {ref} is ambiguous; use NAMESPACE/NAME", markup=False)
    raise typer.Exit(EXIT_FATAL)
