"""``reconciler.yaml``: the optional settings file at the root of a policy repository.

It maps cluster names (as policies spell them, e.g. ``mgmt-cluster``) to kube contexts, and holds
the status and prune settings a platform team wants versioned with its policy. Example::

    clusters:
      mgmt-cluster: kind-mgmt          # cluster name -> kube context
      remote-cluster: {context: kind-remote}
    managementCluster: mgmt-cluster    # holds the run Lease
    status:
      path: status
    prune:
      enabled: true
      maxPruneRatio: 0.5
    tenancy:                           # namespace boundaries (reconciler/tenancy.py, docs/tenancy.md)
      - policyNamespaces: [team-a, team-a-*]
        destinationNamespaces: [team-a, istio-system]
      - policyNamespaces: ["*"]        # without it, no other namespace's policy may write anywhere
        destinationNamespaces: ["*"]
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from reconciler.findings import Finding, Location, error, format_path
from reconciler.tenancy import DEFAULT_TENANCY, Tenancy, pattern_problem
from reconciler.validation import validation_problems
from reconciler.yamlio import load

FILENAME = "reconciler.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ClusterEntry(_Model):
    context: str


def repo_subdir(path: str, *, parent: str = ".") -> str:
    """``parent/path`` as a clean relative POSIX path strictly inside the repository (``sub/status``).

    The one place status paths are normalised — for reconciler.yaml validation, the status writer,
    and git (which must recognise our own status commits) — so the three can never disagree.
    Raises ValueError for an absolute path, ``..``, or the repository root itself.
    """
    rel = PurePosixPath(path.replace("\\", "/"))
    joined = PurePosixPath(parent.replace("\\", "/")) / rel
    if not path.strip() or rel.is_absolute() or ".." in joined.parts or joined.as_posix() == ".":
        raise ValueError(f"must be a subdirectory of the repository, got {path!r}")
    return joined.as_posix()


class StatusSettings(_Model):
    path: str = "status"
    snapshot: bool = False
    """Also commit the fleet's topology as the pass listed it into ``<path>/snapshot/`` (no Secrets,
    none of our own objects, size bounded), so pull-request CI can run ``reconciler impact --state``
    without cluster credentials."""

    @field_validator("path")
    @classmethod
    def _inside_repository(cls, value: str) -> str:
        # Reported here, with the file, rather than when the status write is refused after a pass.
        repo_subdir(value)
        return value


class PruneSettings(_Model):
    enabled: bool = True
    max_prune_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5


class TenancyRuleSettings(_Model):
    """One ``tenancy`` entry; the first whose ``policyNamespaces`` matches a policy's namespace decides."""

    policy_namespaces: list[str]
    destination_namespaces: list[str]

    @field_validator("policy_namespaces", "destination_namespaces")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        problems = [p for p in (pattern_problem(v) for v in value) if p]
        if problems:
            raise ValueError("; ".join(problems))
        if value and all(v.startswith("!") for v in value):
            # Only denials allow nothing; almost certainly meant "everything except", so say so.
            raise ValueError("only '!' patterns match nothing; add what they are carved out of, e.g. '*'")
        return value

    @field_validator("policy_namespaces")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("must name at least one namespace or glob (a rule for no policy is a mistake)")
        return value


class RepoConfig(_Model):
    clusters: dict[str, ClusterEntry] = Field(default_factory=dict)
    management_cluster: str | None = None
    status: StatusSettings = Field(default_factory=StatusSettings)
    prune: PruneSettings = Field(default_factory=PruneSettings)
    tenancy: list[TenancyRuleSettings] | None = None
    """None (no section): any namespace but the protected system ones. A list is an allowlist."""
    _unusable: str = PrivateAttr(default="")
    """Set when reconciler.yaml was present but unusable and might have held tenancy rules."""

    def namespace_boundaries(self) -> Tenancy:
        """The tenancy rules translation enforces (fail closed when the file could not be read)."""
        if self._unusable:
            return Tenancy.fail_closed(self._unusable)
        if self.tenancy is None:
            return DEFAULT_TENANCY
        return Tenancy.from_rules((r.policy_namespaces, r.destination_namespaces) for r in self.tenancy)

    @field_validator("clusters", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ({"context": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value

    def context_for(self, cluster: str) -> str:
        entry = self.clusters.get(cluster)
        return entry.context if entry else cluster

    def cluster_for_context(self, context: str) -> str:
        for name, entry in self.clusters.items():
            if entry.context == context:
                return name
        return context


def load_repo_config(root: Path) -> tuple[RepoConfig, list[Finding]]:
    """Read ``root/reconciler.yaml`` if present; a broken file is a finding and defaults apply.

    Except for tenancy: when the broken file has (or, unparseable, may have) a ``tenancy`` section,
    the default -- every namespace but the system ones -- would silently widen what the repository
    is trusted with, so the boundaries fail closed instead and every policy that writes is invalid.
    """
    path = root / FILENAME
    if not path.is_file():
        return RepoConfig(), []
    raw: Any = None
    try:
        raw = load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError("reconciler.yaml must be a mapping")
        return RepoConfig.model_validate(raw), []
    except (yaml.YAMLError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, RecursionError):  # e.g. 900 nested brackets or a recursive alias
            exc = ValueError("nested too deeply (recursive alias?)")
        if isinstance(exc, ValidationError):
            msgs = "; ".join(
                f"{format_path(path)}: {msg}" for path, msg in validation_problems(exc, RepoConfig)
            )
        else:
            msgs = str(exc)
        fallback = RepoConfig()
        if not isinstance(raw, dict) or "tenancy" in raw:
            fallback._unusable = f"{FILENAME} is invalid ({msgs})"
        return fallback, [
            error(f"invalid {FILENAME}: {msgs}", location=Location(FILENAME), code="InvalidConfig")
        ]
