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
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from reconciler.findings import Finding, Location, error

FILENAME = "reconciler.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ClusterEntry(_Model):
    context: str


class StatusSettings(_Model):
    path: str = "status"


class PruneSettings(_Model):
    enabled: bool = True
    max_prune_ratio: Annotated[float, Field(ge=0, le=1)] = 0.5


class RepoConfig(_Model):
    clusters: dict[str, ClusterEntry] = Field(default_factory=dict)
    management_cluster: str | None = None
    status: StatusSettings = Field(default_factory=StatusSettings)
    prune: PruneSettings = Field(default_factory=PruneSettings)

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
    """Read ``root/reconciler.yaml`` if present; a broken file is a finding and defaults apply."""
    path = root / FILENAME
    if not path.is_file():
        return RepoConfig(), []
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError("reconciler.yaml must be a mapping")
        return RepoConfig.model_validate(raw), []
    except (yaml.YAMLError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False)
            )
        else:
            msgs = str(exc)
        return RepoConfig(), [
            error(f"invalid {FILENAME}: {msgs}", location=Location(FILENAME), code="InvalidConfig")
        ]
