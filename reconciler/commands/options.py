"""Every command-line option, declared once; the groups commands take them in; the one way to Settings.

Like kubectl's shared flag structs: a command that reads clusters takes the *cluster-source* options
(the same flags, help and ``RECONCILER_*`` environment variables everywhere), ``diff`` and
``reconcile`` the same *apply* options, and so on. Typer needs each option as a parameter of the
command function, so a command lists the ``Annotated`` types below as its parameters (defaults come
from :data:`DEFAULTS`, i.e. :class:`reconciler.settings.Settings`) and hands them to the option
groups, which :func:`make_settings` turns into one :class:`Settings`:

    flag  >  RECONCILER_<NAME> environment  >  reconciler.yaml (``Settings.resolved``)  >  default

A group's fields are setting names — checked when this module is imported — and a setting reaches
``Settings`` only through a group: no option can be dropped on the way (ruff's ARG rule, enabled for
``reconciler/commands``, reports a command parameter that is never used).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from reconciler.clusters.targets import split_kubeconfig
from reconciler.output import DiffFormat, OutputFormat, ReportFormat
from reconciler.settings import SETTING_NAMES, Settings, env_name

DEFAULTS = Settings()
"""Defaults of every setting option (the flag default is the setting's default)."""


def _option(decls: str, help: str) -> Any:
    """An option with its environment variable: ``--max-prune-ratio`` -> RECONCILER_MAX_PRUNE_RATIO."""
    name = decls.split("/")[0].removeprefix("--").replace("-", "_")
    return typer.Option(decls, help=help, envvar=env_name(name), show_envvar=True)


# --------------------------------------------------------------------------------------------------
# policies and output

PathArg = Annotated[Path, typer.Argument(help="Policy directory (a checkout of the policy repository).")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]
DiffOutputOpt = Annotated[
    DiffFormat, typer.Option("--output", "-o", help="Output format (markdown: a pull-request comment).")
]
ReportOutputOpt = Annotated[
    ReportFormat, typer.Option("--output", "-o", help="Output format (markdown: a pull-request comment).")
]

BuildCacheDirOpt = Annotated[
    str,
    _option(
        "--build-cache-dir",
        "Where the last build of PATH is kept, reused while its files and the clusters' state are "
        "unchanged (default: $XDG_CACHE_HOME/mesh-reconciler/builds; off: build every time).",
    ),
]

# --------------------------------------------------------------------------------------------------
# impact: two revisions of the policy repository

BaseOpt = Annotated[
    str,
    typer.Option(
        "--base",
        help="The revision before the change: a git ref of the repository holding PATH "
        "(origin/main, HEAD~1, a sha) or a policy directory.",
    ),
]
HeadOpt = Annotated[
    str | None,
    typer.Option(
        "--head",
        help="The revision after the change: a git ref or a policy directory (default: PATH as it is on disk).",
    ),
]

# --------------------------------------------------------------------------------------------------
# cluster source: every command that reads clusters

KubeconfigOpt = Annotated[
    list[str] | None,
    _option(
        "--kubeconfig",
        "Kubeconfig file (repeatable, or ':'-separated like $KUBECONFIG); "
        "default: $KUBECONFIG or ~/.kube/config.",
    ),
]
ContextOpt = Annotated[
    list[str] | None,
    _option(
        "--context",
        "Kube context (repeatable); default: the clusters named in reconciler.yaml, else every context.",
    ),
]
InClusterOpt = Annotated[
    bool, _option("--in-cluster", "Also use the pod's service account for its own cluster.")
]
RequestTimeoutOpt = Annotated[float, _option("--request-timeout", "Seconds per API request.")]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state", help="Read live state from a snapshot directory (DIR/<cluster>.yaml) instead of clusters."
    ),
]

# --------------------------------------------------------------------------------------------------
# apply: what reconcile may do, and so what diff reports it would do

DryRunOpt = Annotated[
    bool, _option("--dry-run", "Send every write with dryRun=All; nothing persists, no status commit.")
]
ForceOpt = Annotated[
    bool, _option("--force/--no-force", "Take over fields owned by other managers (default) or report them.")
]
PruneOpt = Annotated[
    str | None,
    _option(
        "--prune",
        "true|false: delete objects we own that are no longer desired (default: reconciler.yaml's).",
    ),
]
AdoptOpt = Annotated[bool, _option("--adopt", "Take over existing objects that lack our ownership markers.")]
MaxPruneRatioOpt = Annotated[
    float | None,
    _option(
        "--max-prune-ratio",
        "Refuse to prune more than this share of a cluster's objects (default: reconciler.yaml's).",
    ),
]
AllowMassPruneOpt = Annotated[bool, _option("--allow-mass-prune", "Allow pruning beyond --max-prune-ratio.")]

# --------------------------------------------------------------------------------------------------
# git source

RepoOpt = Annotated[
    str, _option("--repo", "Policy repository: a git URL (https/ssh/file) or a local git repository path.")
]
BranchOpt = Annotated[
    str | None, _option("--branch", "Branch to reconcile (default: the remote's default branch).")
]
RevisionOpt = Annotated[str | None, _option("--revision", "Exact commit to reconcile (overrides --branch).")]
RepoPathOpt = Annotated[str, _option("--path", "Directory inside the repository holding the policies.")]
CacheDirOpt = Annotated[str, _option("--cache-dir", "Where the clone is kept between runs.")]
GitTokenEnvOpt = Annotated[
    str,
    _option(
        "--git-token-env",
        "Name of the environment variable holding an HTTPS token (never put it in the URL).",
    ),
]
GitTokenFileOpt = Annotated[
    str | None, _option("--git-token-file", "File holding an HTTPS token (e.g. a mounted Secret).")
]
SshKeyFileOpt = Annotated[str | None, _option("--ssh-key-file", "SSH private key for git over SSH.")]
KnownHostsFileOpt = Annotated[
    str | None, _option("--known-hosts-file", "known_hosts for git over SSH (strict checking).")
]

# --------------------------------------------------------------------------------------------------
# status reports

StatusPathOpt = Annotated[
    str | None,
    _option("--status-path", "Status directory inside --path (default: reconciler.yaml's, else status)."),
]
StatusBranchOpt = Annotated[
    str | None, _option("--status-branch", "Push status commits to this branch instead.")
]
CommitOpt = Annotated[
    bool, _option("--commit/--no-commit", "Commit and push status (default) or only write the files.")
]
AuthorNameOpt = Annotated[str, _option("--author-name", "Author of status commits.")]
AuthorEmailOpt = Annotated[str, _option("--author-email", "Author e-mail of status commits.")]
StatusSnapshotOpt = Annotated[
    str | None,
    _option(
        "--status-snapshot",
        "true|false: also write the live state (no Secrets, size bounded) into <status>/snapshot/ "
        "for `impact --state` in CI (default: reconciler.yaml's status.snapshot, else false).",
    ),
]

# --------------------------------------------------------------------------------------------------
# run Lease and logs

LeaseClusterOpt = Annotated[
    str | None, _option("--lease-cluster", "Cluster holding the run Lease (default: managementCluster).")
]
LeaseNamespaceOpt = Annotated[str, _option("--lease-namespace", "Namespace of the run Lease.")]

# --------------------------------------------------------------------------------------------------
# shards: several processes share the fleet (docs/scaling.md)

ShardOpt = Annotated[
    str | None,
    _option(
        "--shard",
        "INDEX/COUNT: write only this shard's clusters (rendezvous hashing on the cluster name); "
        "translation still reads every cluster. Default: $JOB_COMPLETION_INDEX with --shard-count.",
    ),
]
ShardCountOpt = Annotated[
    int | None,
    _option(
        "--shard-count",
        "Number of shards; with it, the index comes from $JOB_COMPLETION_INDEX (an Indexed Job).",
    ),
]
LogFormatOpt = Annotated[str, _option("--log-format", "auto (text on a TTY, else JSON lines), text or json.")]
LogLevelOpt = Annotated[
    str,
    _option("--log-level", "debug, info, warning or error (debug includes tracebacks of unexpected errors)."),
]

# --------------------------------------------------------------------------------------------------
# explain / envoy-config: a client somewhere

VirtualDestinationArg = Annotated[str, typer.Argument(help="VirtualDestination: NAME or NAMESPACE/NAME.")]
FromOpt = Annotated[str, typer.Option("--from", help="Client locality: REGION[/ZONE[/SUBZONE]].")]
ClientClusterOpt = Annotated[
    str | None, typer.Option("--cluster", help="Client cluster (default: the one with nodes there).")
]

# --------------------------------------------------------------------------------------------------
# serve: the schedule and the HTTP endpoints (options of the process, not of a pass: not settings)

IntervalOpt = Annotated[str | None, _option("--interval", "Run every INTERVAL (30s, 5m, 1h).")]
CronOpt = Annotated[str | None, _option("--cron", "Cron schedule instead ('*/5 * * * *').")]
ListenAddressOpt = Annotated[
    str, _option("--listen-address", "Address for /healthz, /readyz, /metrics (0.0.0.0 in a pod).")
]
PortOpt = Annotated[int, _option("--port", "Port for /healthz, /readyz, /metrics.")]
ShutdownGraceOpt = Annotated[
    float, _option("--shutdown-grace", "Seconds a running pass may take to finish after SIGTERM.")
]

SERVE_OPTIONS = frozenset({"interval", "cron", "listen_address", "port", "shutdown_grace"})
"""The only options with a RECONCILER_* variable that are not settings."""


# --------------------------------------------------------------------------------------------------
# option groups -> Settings


@dataclass(frozen=True)
class OptionGroup:
    """Options that become settings of the same names (see :func:`make_settings`)."""

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class ClusterOptions(OptionGroup):
    """Where live state comes from (``--state``, a snapshot, is passed beside it: not a setting)."""

    kubeconfig: list[str] | None
    context: list[str] | None
    in_cluster: bool
    request_timeout: float

    def values(self) -> dict[str, Any]:
        return {
            **super().values(),
            "kubeconfig": split_kubeconfig(self.kubeconfig),
            "context": list(self.context or []),
        }


@dataclass(frozen=True)
class ApplyOptions(OptionGroup):
    dry_run: bool
    force: bool
    prune: str | None
    adopt: bool
    max_prune_ratio: float | None
    allow_mass_prune: bool

    def values(self) -> dict[str, Any]:
        prune = None if self.prune is None else parse_bool(self.prune, "--prune")
        return {**super().values(), "prune": prune}


@dataclass(frozen=True)
class BuildOptions(OptionGroup):
    build_cache_dir: str


@dataclass(frozen=True)
class GitOptions(OptionGroup):
    repo: str
    branch: str | None
    revision: str | None
    path: str
    cache_dir: str
    git_token_env: str
    git_token_file: str | None
    ssh_key_file: str | None
    known_hosts_file: str | None


@dataclass(frozen=True)
class StatusOptions(OptionGroup):
    status_path: str | None
    status_branch: str | None
    commit: bool
    author_name: str
    author_email: str
    status_snapshot: str | None

    def values(self) -> dict[str, Any]:
        snapshot = (
            None if self.status_snapshot is None else parse_bool(self.status_snapshot, "--status-snapshot")
        )
        return {**super().values(), "status_snapshot": snapshot}


@dataclass(frozen=True)
class LeaseOptions(OptionGroup):
    lease_cluster: str | None
    lease_namespace: str


@dataclass(frozen=True)
class ShardOptions(OptionGroup):
    shard: str | None
    shard_count: int | None


@dataclass(frozen=True)
class LogOptions(OptionGroup):
    log_format: str
    log_level: str


GROUPS: tuple[type[OptionGroup], ...] = (
    ClusterOptions,
    ApplyOptions,
    BuildOptions,
    GitOptions,
    StatusOptions,
    LeaseOptions,
    ShardOptions,
    LogOptions,
)


def check_groups(groups: tuple[type[OptionGroup], ...] = GROUPS) -> None:
    """Every field of every group is a setting (else it could not reach Settings): fail at import."""
    for group in groups:
        unknown = sorted(f.name for f in dataclasses.fields(group) if f.name not in SETTING_NAMES)
        if unknown:
            raise TypeError(f"{group.__name__}: {', '.join(unknown)} is not a Settings field")


check_groups()


def make_settings(*groups: OptionGroup) -> Settings:
    """The one way command-line options become :class:`Settings` (the flag or environment value;
    unset ones keep the defaults); resolve the result against reconciler.yaml with ``.resolved``."""
    values: dict[str, Any] = {}
    for group in groups:
        values.update(group.values())
    return Settings(**values)


PASS_GROUPS: tuple[type[OptionGroup], ...] = (
    GitOptions,
    ClusterOptions,
    ApplyOptions,
    StatusOptions,
    LeaseOptions,
    ShardOptions,
    LogOptions,
)
"""The option groups of a pass (``reconcile``, ``serve``, ``config``)."""


def pass_settings(params: Mapping[str, Any], *, not_settings: Iterable[str] = ()) -> Settings:
    """Settings of a command taking every option of a pass, from its parameters (``locals()``).

    Loud both ways: a group field the command lacks is a KeyError, and a parameter that is neither
    consumed by a group nor declared in ``not_settings`` is a TypeError — an option can never be
    silently dropped on its way to Settings.
    """
    groups = [g(**{f.name: params[f.name] for f in dataclasses.fields(g)}) for g in PASS_GROUPS]
    consumed = {f.name for g in PASS_GROUPS for f in dataclasses.fields(g)} | set(not_settings)
    stray = sorted(set(params) - consumed)
    if stray:
        raise TypeError(f"parameters {', '.join(stray)} reach no setting: add them to an option group")
    return make_settings(*groups)


def parse_bool(value: str, option: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise typer.BadParameter(f"{option} takes true or false, not {value!r}")
