"""The ``reconciler`` command line: thin commands that wire the pipeline stages together.

Habits follow kubectl: ``--context``/``--kubeconfig``, ``-o text|json|yaml``, and exit codes that a
scheduler or CI can act on (documented per command and in the README).
"""

from __future__ import annotations

import enum
import inspect
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from reconciler import __version__
from reconciler.clusters.discover import discover
from reconciler.clusters.inventory import unavailable
from reconciler.clusters.snapshot import SnapshotError, write_snapshot
from reconciler.clusters.targets import TargetError, resolve_targets
from reconciler.engine.changeset import Action, ChangeSet
from reconciler.engine.sync import SyncOptions, sync
from reconciler.envoy import DEFAULT_ADMIN_PORT, DEFAULT_LISTENER_PORT, build_bootstrap, header_comment
from reconciler.explain import ExplainError, explain_for
from reconciler.locality import Locality
from reconciler.logs import log_changes, setup_logging
from reconciler.output import (
    OutputFormat,
    dump_json,
    print_explanation,
    print_findings,
    sort_findings,
    stderr_console,
    stdout_console,
    to_yaml,
    to_yaml_stream,
)
from reconciler.plan import ClusterSource, Plan, build_plan
from reconciler.policy import POLICY_KINDS, load_and_check
from reconciler.policy.durations import parse_duration
from reconciler.reconcile import reconcile_once, unexpected_error
from reconciler.repo_config import RepoConfig, load_repo_config
from reconciler.serve import Worker, serve, trigger
from reconciler.settings import SETTING_NAMES, Settings, env_name
from reconciler.source import redact_url

app = typer.Typer(
    name="reconciler",
    help="GitOps reconciler for locality-aware multi-cluster service-mesh policy (Gloo Mesh API -> Istio).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_FATAL = 2

PathArg = Annotated[Path, typer.Argument(help="Policy directory (a checkout of the policy repository).")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """mesh-reconciler."""


@app.command()
def validate(path: PathArg = Path("."), output: OutputOpt = OutputFormat.TEXT) -> None:
    """Validate every policy under PATH; report every problem at once.

    Exit codes: 0 all valid, 1 some policy invalid, 2 PATH cannot be read.
    """
    err = stderr_console()
    if not path.is_dir():
        err.print(f"error: {path}: not a readable directory", markup=False)
        raise typer.Exit(EXIT_FATAL)
    config, config_findings = load_repo_config(path)
    try:
        policies = load_and_check(path, status_path=config.status.path)
    except OSError as exc:
        err.print(f"error: cannot read {path}: {exc}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    findings = config_findings + policies.findings
    errors = [f for f in findings if f.is_error]
    warnings = [f for f in findings if not f.is_error]
    if output is OutputFormat.TEXT:
        out = stdout_console()
        print_findings(out, findings)
        by_kind: dict[str, int] = {}
        for p in policies.policies:
            by_kind[p.obj.kind] = by_kind.get(p.obj.kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())) or "no policies"
        verdict = "valid" if not errors else "INVALID"
        out.print(
            f"{verdict}: {counts} valid; {len(policies.invalid)} invalid; "
            f"{len(errors)} error(s), {len(warnings)} warning(s)"
        )
    else:
        payload = {
            "valid": not errors,
            "policies": [
                {
                    "kind": p.obj.kind,
                    "namespace": p.obj.namespace,
                    "name": p.obj.name,
                    "file": p.location.file,
                    "line": p.location.line,
                }
                for p in sorted(policies.policies, key=lambda p: p.key)
            ],
            "invalid": [
                {"kind": k.kind, "namespace": k.namespace, "name": k.name, "file": loc.file, "line": loc.line}
                for k, loc in sorted(policies.invalid.items())
            ],
            "findings": [f.to_dict() for f in sort_findings(findings)],
        }
        if output is OutputFormat.JSON:
            dump_json(payload)
        else:
            typer.echo(to_yaml(payload), nl=False)
    raise typer.Exit(EXIT_INVALID if errors else EXIT_OK)


@app.command()
def schema(
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-d", help="Write <kind>.schema.json files here.")
    ] = None,
) -> None:
    """Write JSON Schemas of VirtualDestination, TrafficPolicy and VirtualMesh (for editors)."""
    schemas = {kind: model.model_json_schema(by_alias=True) for kind, model in POLICY_KINDS.items()}
    if output_dir is None:
        dump_json(schemas)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for kind, doc in schemas.items():
        target = output_dir / f"{kind.lower()}.schema.json"
        target.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        stdout_console().print(f"wrote {target}")


# --------------------------------------------------------------------------------------------------
# live state options (shared by every command that reads clusters)

StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state", help="Read live state from a snapshot directory (DIR/<cluster>.yaml) instead of clusters."
    ),
]
ContextOpt = Annotated[
    list[str] | None,
    typer.Option("--context", help="Kube context to use (repeatable); default: all, or reconciler.yaml's."),
]
KubeconfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--kubeconfig", help="Kubeconfig file (repeatable); default: $KUBECONFIG or ~/.kube/config."
    ),
]
InClusterOpt = Annotated[
    bool, typer.Option("--in-cluster", help="Also use the pod's service account for its own cluster.")
]
TimeoutOpt = Annotated[float, typer.Option("--request-timeout", help="Seconds per API request.")]


def _source(
    state: Path | None,
    context: list[str] | None,
    kubeconfig: list[str] | None,
    in_cluster: bool,
    timeout: float,
) -> ClusterSource:
    return ClusterSource(
        state=state,
        contexts=list(context or []),
        kubeconfigs=list(kubeconfig or []),
        in_cluster=in_cluster,
        request_timeout=timeout,
    )


def _plan_or_exit(path: Path, source: ClusterSource) -> Plan:
    err = stderr_console()
    if not path.is_dir():
        err.print(f"error: {path}: not a readable directory", markup=False)
        raise typer.Exit(EXIT_FATAL)
    try:
        return build_plan(path, source)
    except (TargetError, SnapshotError, OSError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None


FromOpt = Annotated[str, typer.Option("--from", help="Client locality: REGION[/ZONE[/SUBZONE]].")]
ClientClusterOpt = Annotated[
    str | None, typer.Option("--cluster", help="Client cluster (default: the one with nodes there).")
]


def _client_locality(text: str) -> Locality:
    client = Locality.parse(text)
    if client is None:
        stderr_console().print("error: --from REGION[/ZONE[/SUBZONE]] is required", markup=False)
        raise typer.Exit(EXIT_FATAL)
    return client


def _report_clusters(plan: Plan) -> int:
    """Print unreachable clusters and notes to stderr; returns how many clusters failed."""
    err = stderr_console()
    failed = 0
    for name, state in sorted(plan.inventory.clusters.items()):
        if state.error:
            failed += 1
            err.print(f"error: {unavailable(name, state.error)} (context {state.context})", markup=False)
        for note in state.notes:
            err.print(f"warning: cluster {name}: {note}", markup=False)
    return failed


@app.command()
def render(
    path: PathArg = Path("."),
    state: StateOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    request_timeout: TimeoutOpt = 10.0,
    cluster: Annotated[
        list[str] | None, typer.Option("--cluster", help="Only this cluster (repeatable).")
    ] = None,
    output: OutputOpt = OutputFormat.YAML,
) -> None:
    """Print the Istio objects the policies translate to, grouped by cluster.

    Exit codes: 0 rendered, 1 some policy invalid or cluster unreachable (the rest is printed), 2 fatal.
    """
    plan = _plan_or_exit(path, _source(state, context, kubeconfig, in_cluster, request_timeout))
    try:
        failed_clusters = _report_clusters(plan)
        findings = plan.findings
        print_findings(stderr_console(), findings)
        wanted = set(cluster or plan.translation.objects)
        groups = {
            c: [o.body for o in objs] for c, objs in sorted(plan.translation.objects.items()) if c in wanted
        }
        if output is OutputFormat.JSON:
            dump_json({"clusters": groups})
        else:
            chunks = []
            for name, bodies in groups.items():
                chunks.append(f"# ---- cluster: {name} ({len(bodies)} objects)\n")
                chunks.append(to_yaml_stream(bodies) if bodies else "")
            typer.echo("".join(chunks), nl=False)
        bad = any(f.is_error for f in findings) or failed_clusters
        raise typer.Exit(EXIT_INVALID if bad else EXIT_OK)
    finally:
        plan.close()


@app.command("explain")
def explain_cmd(
    virtual_destination: Annotated[str, typer.Argument(help="VirtualDestination: NAME or NAMESPACE/NAME.")],
    path: PathArg = Path("."),
    from_: FromOpt = "",
    failed: Annotated[
        list[str] | None,
        typer.Option(
            "--failed", help="Treat these endpoints as ejected: a CLUSTER or a LOCALITY (repeatable)."
        ),
    ] = None,
    cluster: ClientClusterOpt = None,
    state: StateOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    request_timeout: TimeoutOpt = 10.0,
    output: OutputOpt = OutputFormat.TEXT,
) -> None:
    """Show the priority levels Envoy uses for a VirtualDestination, for a client in a locality.

    Exit codes: 0 explained, 2 cannot explain (unknown VirtualDestination, invalid policy, no such locality).
    """
    err = stderr_console()
    client = _client_locality(from_)
    plan = _plan_or_exit(path, _source(state, context, kubeconfig, in_cluster, request_timeout))
    try:
        _report_clusters(plan)
        try:
            result = explain_for(plan, virtual_destination, client, cluster, failed or [])
        except ExplainError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(EXIT_FATAL) from None
        if output is OutputFormat.TEXT:
            print_explanation(stdout_console(), result, failed or [])
        elif output is OutputFormat.JSON:
            dump_json(result.to_dict())
        else:
            typer.echo(to_yaml(result.to_dict()), nl=False)
    finally:
        plan.close()


class BootstrapFormat(enum.StrEnum):
    YAML = "yaml"
    JSON = "json"


@app.command("envoy-config")
def envoy_config_cmd(
    virtual_destination: Annotated[str, typer.Argument(help="VirtualDestination: NAME or NAMESPACE/NAME.")],
    path: PathArg = Path("."),
    from_: FromOpt = "",
    cluster: ClientClusterOpt = None,
    state: StateOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    request_timeout: TimeoutOpt = 10.0,
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
    client = _client_locality(from_)
    if update_merge_window is not None:
        try:
            parse_duration(update_merge_window)
        except ValueError as exc:
            err.print(f"error: --update-merge-window: {exc}", markup=False)
            raise typer.Exit(EXIT_FATAL) from None
    plan = _plan_or_exit(path, _source(state, context, kubeconfig, in_cluster, request_timeout))
    try:
        _report_clusters(plan)
        try:
            result = explain_for(plan, virtual_destination, client, cluster)
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


@app.command()
def snapshot(
    output_dir: Annotated[
        Path, typer.Option("--output", "-o", help="Directory to write <cluster>.yaml files into.")
    ],
    path: Annotated[
        Path, typer.Option("--path", help="Policy directory (for reconciler.yaml cluster names).")
    ] = Path("."),
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    request_timeout: TimeoutOpt = 10.0,
) -> None:
    """Export the live state discovery reads, one kubectl-style List per cluster.

    Exit codes: 0 written, 1 some cluster unreachable (the others are written), 2 fatal.
    """
    err = stderr_console()
    repo, _ = load_repo_config(path) if path.is_dir() else (RepoConfig(), [])
    try:
        targets = resolve_targets(repo, kubeconfigs=kubeconfig, contexts=context, in_cluster=in_cluster)
    except TargetError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    found = discover(targets, timeout=request_timeout)
    try:
        for name, written in zip(sorted(found.raw), write_snapshot(output_dir, found.raw), strict=True):
            stdout_console().print(f"wrote {written} ({len(found.raw[name])} objects)")
        unreachable = [(n, s.error) for n, s in sorted(found.inventory.clusters.items()) if s.error]
        for name, error in unreachable:
            err.print(f"error: {unavailable(name, error)}", markup=False)
        raise typer.Exit(EXIT_INVALID if unreachable else EXIT_OK)
    finally:
        found.close()


# --------------------------------------------------------------------------------------------------
# diff / reconcile


def _parse_bool(value: str, option: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise typer.BadParameter(f"{option} takes true or false, not {value!r}")


def print_changeset(changes: ChangeSet, *, show_diff: bool = True) -> None:
    """kubectl/flux-style human view: per cluster, per object, a coloured unified diff and counts."""
    out = stdout_console()
    styles = {"+": "green", "-": "red", "@": "cyan"}
    for name in sorted(changes.clusters):
        result = changes.clusters[name]
        if not result.reachable:
            out.print(
                f"[bold]cluster {escape(name)}[/bold]: [red]unreachable[/red]: {escape(result.error or '')}"
            )
            continue
        counts = result.counts()
        summary = (
            ", ".join(
                f"{Action(a).symbol} {counts[a]} {a}"
                for a in ("created", "configured", "pruned", "unchanged", "held", "conflict", "failed")
                if counts[a]
            )
            or "no objects"
        )
        out.print(f"[bold]cluster {escape(name)}[/bold]: {summary}")
        for change in result.changes:
            if change.action is Action.UNCHANGED:
                continue
            colour = {"created": "green", "configured": "yellow", "pruned": "red"}.get(
                change.action.value, "magenta"
            )
            line = f"  [{colour}]{change.action.symbol} {change.action.value}[/{colour}] {escape(change.ref)}"
            if change.changed_paths:
                line += escape(f"  ({', '.join(change.changed_paths)})")
            out.print(line)
            if change.message:
                out.print(f"      {escape(change.message)}")
            if change.previous_managers and change.action.is_difference:
                out.print(f"      fields taken over from: {escape(', '.join(change.previous_managers))}")
            if show_diff and change.diff:
                for text in change.diff.splitlines():
                    style = styles.get(text[:1]) if not text.startswith(("+++", "---")) else "bold"
                    out.print(
                        f"      [{style}]{escape(text)}[/{style}]" if style else f"      {escape(text)}"
                    )
        for note in result.notes:
            out.print(f"  [red]{escape(note)}[/red]")
    total = changes.counts()
    out.print(
        "total: "
        + ", ".join(
            f"{total[a]} {a}"
            for a in ("created", "configured", "pruned", "unchanged", "held", "conflict", "failed")
        )
        + (" (dry run)" if changes.dry_run else "")
    )


@app.command("diff")
def diff_cmd(
    path: PathArg = Path("."),
    state: StateOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    in_cluster: InClusterOpt = False,
    request_timeout: TimeoutOpt = 10.0,
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="text or json.")] = OutputFormat.TEXT,
) -> None:
    """Show what reconcile would change in every cluster (desired vs live, on the fields we own).

    Only differing objects cost a request (a server-side dry-run apply that confirms them).
    Exit codes (like kubectl diff): 0 no differences, 1 differences, 2 error (invalid policy,
    unreachable cluster; what could be computed is still printed).
    """
    plan = _plan_or_exit(path, _source(state, context, kubeconfig, in_cluster, request_timeout))
    try:
        print_findings(stderr_console(), plan.findings)
        failed = _report_clusters(plan)
        # Against a snapshot there is no server to confirm differences with: local comparison only.
        clients = plan.discovery.clients if plan.discovery else {}
        options = SyncOptions(
            apply=False, prune=plan.repo.prune.enabled, max_prune_ratio=plan.repo.prune.max_prune_ratio
        )
        changes = sync(plan, clients, options)
        if output is OutputFormat.TEXT:
            print_changeset(changes)
        else:
            dump_json(changes.to_dict())
        errors = any(f.is_error for f in plan.findings) or failed or changes.has_errors
        raise typer.Exit(EXIT_FATAL if errors else EXIT_INVALID if changes.has_differences else EXIT_OK)
    finally:
        plan.close()


# --------------------------------------------------------------------------------------------------
# reconcile / config: flags > RECONCILER_* environment > reconciler.yaml > defaults


def _opt(*names: str, help: str, setting: str | None = None, **kw: Any) -> Any:
    env = env_name(setting or names[0].lstrip("-").split("/")[0].replace("-", "_"))
    return typer.Option(*names, help=help, envvar=env, show_envvar=True, **kw)


RepoOpt = Annotated[
    str, _opt("--repo", help="Policy repository: a git URL (https/ssh/file) or a local git repository path.")
]
BranchOpt = Annotated[
    str | None, _opt("--branch", help="Branch to reconcile (default: the remote's default branch).")
]
RevisionOpt = Annotated[
    str | None, _opt("--revision", help="Exact commit to reconcile (overrides --branch).")
]
SubdirOpt = Annotated[str, _opt("--path", help="Directory inside the repository holding the policies.")]
CacheOpt = Annotated[str, _opt("--cache-dir", help="Where the clone is kept between runs.")]
TokenEnvOpt = Annotated[
    str,
    _opt(
        "--git-token-env",
        help="Name of the environment variable holding an HTTPS token (never put it in the URL).",
    ),
]
TokenFileOpt = Annotated[
    str | None, _opt("--git-token-file", help="File holding an HTTPS token (e.g. a mounted Secret).")
]
SshKeyOpt = Annotated[str | None, _opt("--ssh-key-file", help="SSH private key for git over SSH.")]
KnownHostsOpt = Annotated[
    str | None, _opt("--known-hosts-file", help="known_hosts for git over SSH (strict checking).")
]
KubeconfigsOpt = Annotated[
    list[str] | None, _opt("--kubeconfig", help="Kubeconfig file (repeatable; env: ':'-separated).")
]
ContextsOpt = Annotated[list[str] | None, _opt("--context", help="Kube context (repeatable).")]
InClusterFlag = Annotated[
    bool, _opt("--in-cluster", help="Use the pod's service account for its own cluster.")
]
DryRunFlag = Annotated[
    bool, _opt("--dry-run", help="Send every write with dryRun=All; nothing persists, no status commit.")
]
ForceFlag = Annotated[
    bool,
    _opt(
        "--force/--no-force",
        help="Take over fields owned by other managers (default) or report them.",
        setting="force",
    ),
]
PruneOpt = Annotated[
    str | None, _opt("--prune", help="true|false: delete objects we own that are no longer desired.")
]
AdoptFlag = Annotated[
    bool, _opt("--adopt", help="Take over existing objects that lack our ownership markers.")
]
RatioOpt = Annotated[
    float | None,
    _opt("--max-prune-ratio", help="Refuse to prune more than this share of a cluster's objects."),
]
MassFlag = Annotated[bool, _opt("--allow-mass-prune", help="Allow pruning beyond --max-prune-ratio.")]
StatusPathOpt = Annotated[
    str | None,
    _opt("--status-path", help="Status directory inside --path (default: reconciler.yaml's, else status)."),
]
StatusBranchOpt = Annotated[
    str | None, _opt("--status-branch", help="Push status commits to this branch instead.")
]
CommitFlag = Annotated[
    bool,
    _opt(
        "--commit/--no-commit",
        help="Commit and push status (default) or only write the files.",
        setting="commit",
    ),
]
AuthorOpt = Annotated[str, _opt("--author-name", help="Author of status commits.")]
EmailOpt = Annotated[str, _opt("--author-email", help="Author e-mail of status commits.")]
LeaseClusterOpt = Annotated[
    str | None, _opt("--lease-cluster", help="Cluster holding the run Lease (default: managementCluster).")
]
LeaseNsOpt = Annotated[str, _opt("--lease-namespace", help="Namespace of the run Lease.")]
LogLevelOpt = Annotated[
    str,
    _opt(
        "--log-level", help="debug, info, warning or error (debug includes tracebacks of unexpected errors)."
    ),
]
LogFormatOpt = Annotated[
    str, _opt("--log-format", help="auto (text on a TTY, else JSON lines), text or json.")
]


def _settings(**values: Any) -> Settings:
    prune = values.pop("prune")
    settings = Settings(**{k: v for k, v in values.items() if v is not None and k in SETTING_NAMES})
    if prune is not None:
        settings.prune = _parse_bool(prune, "--prune")
    return settings


@app.command("reconcile")
def reconcile_cmd(
    repo: RepoOpt = "",
    branch: BranchOpt = None,
    revision: RevisionOpt = None,
    path: SubdirOpt = ".",
    cache_dir: CacheOpt = "",
    git_token_env: TokenEnvOpt = "RECONCILER_GIT_TOKEN",
    git_token_file: TokenFileOpt = None,
    ssh_key_file: SshKeyOpt = None,
    known_hosts_file: KnownHostsOpt = None,
    kubeconfig: KubeconfigsOpt = None,
    context: ContextsOpt = None,
    in_cluster: InClusterFlag = False,
    request_timeout: TimeoutOpt = 10.0,
    dry_run: DryRunFlag = False,
    force: ForceFlag = True,
    prune: PruneOpt = None,
    adopt: AdoptFlag = False,
    max_prune_ratio: RatioOpt = None,
    allow_mass_prune: MassFlag = False,
    status_path: StatusPathOpt = None,
    status_branch: StatusBranchOpt = None,
    commit: CommitFlag = True,
    author_name: AuthorOpt = "mesh-reconciler",
    author_email: EmailOpt = "mesh-reconciler@localhost",
    lease_cluster: LeaseClusterOpt = None,
    lease_namespace: LeaseNsOpt = "mesh-reconciler",
    log_format: LogFormatOpt = "auto",
    log_level: LogLevelOpt = "info",
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="Change set as text or json.")
    ] = OutputFormat.TEXT,
) -> None:
    """Pull the policy repository, apply it to every cluster, commit status back.

    Exit codes: 0 converged, 1 degraded (invalid policies, rejected objects or unreachable
    clusters; the rest was reconciled), 2 fatal (configuration, git, lock held; nothing applied).
    """
    settings = _settings_from(locals())
    setup_logging(settings.log_format, settings.log_level)
    outcome = reconcile_once(settings)
    err = stderr_console()
    if outcome.result is not None:
        plan = outcome.result.plan
        print_findings(err, plan.findings)
        log_changes(outcome.result.changes)
        if output is OutputFormat.JSON:
            payload = outcome.result.changes.to_dict()
            payload["commit"] = outcome.checkout.sha if outcome.checkout else None
            payload["policyCommit"] = outcome.checkout.policy_commit if outcome.checkout else None
            payload["statusCommit"] = outcome.status_commit
            payload["exitCode"] = outcome.exit_code
            dump_json(payload)
        else:
            print_changeset(outcome.result.changes)
            if outcome.status_commit:
                stdout_console().print(f"status committed: {outcome.status_commit[:12]}")
            elif outcome.status_changed:
                stdout_console().print(
                    f"status written to {outcome.checkout.path if outcome.checkout else '?'} (not committed)"
                )
            else:
                stdout_console().print("status unchanged: no commit")
    if outcome.error:
        err.print(f"error: {outcome.error}", markup=False)
    raise typer.Exit(outcome.exit_code)


def _settings_from(params: dict[str, Any]) -> Settings:
    """Settings from a command's parameters (the option names are the setting names)."""
    values = dict(params)
    values["kubeconfig"] = _split_paths(values.get("kubeconfig"))
    values["context"] = list(values.get("context") or [])
    if isinstance(values.get("output"), OutputFormat):
        values["output"] = values["output"].value
    values.setdefault("prune", None)
    return _settings(**values)


def serve_cmd(
    interval: str | None,
    cron: str | None,
    listen_address: str,
    port: int,
    shutdown_grace: float,
    **common: Any,
) -> None:
    """Run the reconcile pass on a schedule; serve /healthz, /readyz and /metrics.

    Never two passes at once; SIGTERM finishes (or, after --shutdown-grace, abandons) the running
    pass and exits 0. Same options, environment variables and per-pass semantics as `reconcile`;
    the process exits 0 on a clean shutdown and 2 on bad configuration.
    """
    settings = _settings_from(common)
    setup_logging(settings.log_format, settings.log_level)
    err = stderr_console()
    try:
        seconds = parse_duration(interval).total_seconds() if interval else None
        trigger(seconds, cron)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    worker = Worker(settings)
    try:
        code = serve(
            worker,
            interval=seconds,
            cron=cron,
            address=listen_address,
            port=port,
            shutdown_grace=shutdown_grace,
        )
    except OSError as exc:
        err.print(f"error: cannot listen on {listen_address}:{port}: {exc}", markup=False)
        raise typer.Exit(EXIT_FATAL) from None
    if worker.busy:
        os._exit(code)  # the abandoned pass's thread must not keep the process alive
    raise typer.Exit(code)


def _param(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _register_with_reconcile_options(name: str, command: Any, extra: list[inspect.Parameter]) -> None:
    """Register ``command`` taking every `reconcile` option (one list, one place) plus ``extra``."""
    common = [
        p for p in inspect.signature(reconcile_cmd, eval_str=True).parameters.values() if p.name != "output"
    ]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in common] + extra
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    app.command(name)(command)


def _register_commands() -> None:
    _register_with_reconcile_options(
        "serve",
        serve_cmd,
        [
            _param(
                "interval",
                None,
                Annotated[str | None, _opt("--interval", help="Run every INTERVAL (30s, 5m, 1h).")],
            ),
            _param(
                "cron",
                None,
                Annotated[str | None, _opt("--cron", help="Cron schedule instead ('*/5 * * * *').")],
            ),
            _param(
                "listen_address",
                "127.0.0.1",
                Annotated[
                    str,
                    _opt(
                        "--listen-address", help="Address for /healthz, /readyz, /metrics (0.0.0.0 in a pod)."
                    ),
                ],
            ),
            _param(
                "port", 9090, Annotated[int, _opt("--port", help="Port for /healthz, /readyz, /metrics.")]
            ),
            _param(
                "shutdown_grace",
                60.0,
                Annotated[
                    float,
                    _opt("--shutdown-grace", help="Seconds a running pass may take to finish after SIGTERM."),
                ],
            ),
        ],
    )
    _register_with_reconcile_options(
        "config",
        config_cmd,
        [
            _param(
                "repo_config",
                None,
                Annotated[
                    Path | None,
                    typer.Option(
                        "--repo-config", help="A reconciler.yaml to merge (as a run would after the fetch)."
                    ),
                ],
            ),
            _param("output", OutputFormat.YAML, Annotated[OutputFormat, typer.Option("--output", "-o")]),
        ],
    )


def _split_paths(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out.extend(p for p in v.split(":") if p)
    return out


def config_cmd(repo_config: Path | None, output: OutputFormat, **common: Any) -> None:
    """Print the effective configuration (flags > RECONCILER_* env > reconciler.yaml > defaults), secrets redacted.

    Takes every option of `reconcile`, so a CronJob's exact flags and environment can be checked.
    """
    settings = _settings_from(common)
    repo_cfg = RepoConfig()
    if repo_config is not None:
        repo_cfg, findings = load_repo_config(repo_config.parent)
        print_findings(stderr_console(), findings)
    data = settings.resolved(repo_cfg).redacted()
    data["repo"] = redact_url(data["repo"])
    if output is OutputFormat.JSON:
        dump_json(data)
    else:
        typer.echo(to_yaml(data), nl=False)


_register_commands()


def main() -> None:
    """Entry point: an exception no command foresaw is fatal (exit 2) with one line, never a traceback
    and never exit 1 (which schedulers read as "degraded, everything else converged")."""
    try:
        app()
    except Exception as exc:
        logging.getLogger("reconciler").debug("unexpected error", exc_info=True)
        if os.environ.get(env_name("log_level"), "").lower() == "debug":
            traceback.print_exc()
        typer.echo(f"error: {unexpected_error(exc)}", err=True)
        sys.exit(EXIT_FATAL)
