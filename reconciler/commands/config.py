"""``config``: the effective configuration of a run, from exactly the flags and environment it gets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands import options as opt
from reconciler.output import OutputFormat, print_document, print_findings, stderr_console
from reconciler.repo_config import RepoConfig, load_repo_config


def config(
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
    repo_config: Annotated[
        Path | None,
        typer.Option("--repo-config", help="A reconciler.yaml to merge (as a run would after the fetch)."),
    ] = None,
    output: opt.OutputOpt = OutputFormat.YAML,
) -> None:
    """Print the effective configuration (flags > RECONCILER_* env > reconciler.yaml > defaults), secrets redacted.

    Takes every option of `reconcile`, so a CronJob's exact flags and environment can be checked.
    """
    settings = opt.pass_settings(locals(), not_settings=("repo_config", "output"))
    repo_cfg = RepoConfig()
    if repo_config is not None:
        repo_cfg, findings = load_repo_config(repo_config.parent)
        print_findings(stderr_console(), findings)
    data = settings.resolved(repo_cfg).redacted()
    from reconciler.source import redact_url  # lazy: git's import is a start-up cost of every command

    data["repo"] = redact_url(data["repo"])
    print_document(data, output)
