"""Effective configuration of a reconcile run, with one documented precedence.

    command-line flag  >  environment variable RECONCILER_<NAME>  >  reconciler.yaml  >  default

Flags and environment variables configure the deployment (where the repository is, credentials,
clusters, lease); ``reconciler.yaml`` in the policy repository holds the policy team's settings
(status path, prune, cluster names, management cluster). A setting that exists in both places — e.g.
``prune`` or ``maxPruneRatio`` — is taken from the flag/environment when given there, otherwise from
the repository, otherwise the default. ``reconciler config`` prints the result with secrets redacted.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from reconciler.engine.lease import LEASE_NAME, LEASE_NAMESPACE, LEASE_SECONDS
from reconciler.repo_config import RepoConfig

ENV_PREFIX = "RECONCILER_"
DEFAULT_TOKEN_ENV = "RECONCILER_GIT_TOKEN"


def cache_home() -> Path:
    """Where our caches live by default: ``$XDG_CACHE_HOME/mesh-reconciler`` (``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "mesh-reconciler"


@dataclass
class Settings:
    # source
    repo: str = ""
    branch: str | None = None
    revision: str | None = None
    path: str = "."
    cache_dir: str = ""
    build_cache_dir: str = ""
    """Where ``diff`` keeps the last build of each policy directory ("": under :func:`cache_home`;
    ``off``: build every time)."""
    git_token_env: str = DEFAULT_TOKEN_ENV
    git_token_file: str | None = None
    git_username: str = "x-access-token"
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    ssh_strict_host_key_checking: bool = True
    # clusters
    kubeconfig: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)
    in_cluster: bool = False
    request_timeout: float = 10.0
    # apply
    dry_run: bool = False
    force: bool = True
    prune: bool | None = None
    adopt: bool = False
    max_prune_ratio: float | None = None
    allow_mass_prune: bool = False
    # status
    status_path: str | None = None
    status_branch: str | None = None
    commit: bool = True
    author_name: str = "mesh-reconciler"
    author_email: str = "mesh-reconciler@localhost"
    status_snapshot: bool | None = None
    """Also write the live state into ``<status>/snapshot/`` (None: reconciler.yaml's status.snapshot)."""
    # lease
    lease_name: str = LEASE_NAME
    lease_namespace: str = LEASE_NAMESPACE
    lease_duration: int = LEASE_SECONDS
    lease_cluster: str | None = None
    # shards (one process per shard: see reconciler/shard.py and docs/scaling.md)
    shard: str | None = None
    shard_count: int | None = None
    # logs
    log_format: str = "auto"
    log_level: str = "info"

    def resolved(self, repo_config: RepoConfig) -> Settings:
        """Fill repository-level settings the flags/environment left open from reconciler.yaml."""
        out = Settings(**asdict(self))
        if out.prune is None:
            out.prune = repo_config.prune.enabled
        if out.max_prune_ratio is None:
            out.max_prune_ratio = repo_config.prune.max_prune_ratio
        if out.status_path is None:
            out.status_path = repo_config.status.path
        if out.status_snapshot is None:
            out.status_snapshot = repo_config.status.snapshot
        if out.lease_cluster is None:
            out.lease_cluster = repo_config.management_cluster
        return out

    def cache_for_repo(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir)
        digest = hashlib.sha256(self.repo.encode()).hexdigest()[:12]
        return cache_home() / "repos" / digest

    def build_cache_for(self, root: Path) -> Path | None:
        """The directory keeping the last build of the policy directory ``root`` (None: off)."""
        if self.build_cache_dir.strip().lower() == "off":
            return None
        base = Path(self.build_cache_dir) if self.build_cache_dir else cache_home() / "builds"
        return base / hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12]

    def redacted(self) -> dict[str, Any]:
        data = asdict(self)
        data["git_token"] = "(set, redacted)" if os.environ.get(self.git_token_env) else "(not set)"
        return data


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


SETTING_NAMES = tuple(f.name for f in fields(Settings))
