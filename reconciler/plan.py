"""The read-only front half of every run: policies + live state -> desired state.

``build_plan`` loads ``reconciler.yaml`` and the policies, gets the live state (discovery over the
selected kube contexts, or a snapshot directory) and translates. ``render``, ``explain``, ``diff`` and
``reconcile`` all start here, so they can never disagree about what is desired.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reconciler.clusters.discover import Discovery, discover
from reconciler.clusters.inventory import Inventory
from reconciler.clusters.snapshot import read_snapshot
from reconciler.clusters.targets import resolve_targets
from reconciler.findings import Finding
from reconciler.policy import PolicySet, load_and_check
from reconciler.repo_config import RepoConfig, load_repo_config
from reconciler.translate import Translation, translate


@dataclass
class ClusterSource:
    """Where live state comes from: a snapshot directory, or kube contexts."""

    state: Path | None = None
    kubeconfigs: list[str] = field(default_factory=list)
    contexts: list[str] = field(default_factory=list)
    in_cluster: bool = False
    request_timeout: float = 10.0
    cluster_timeout: float = 60.0


@dataclass
class Plan:
    root: Path
    repo: RepoConfig
    policies: PolicySet
    inventory: Inventory
    translation: Translation
    discovery: Discovery | None
    config_findings: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        out = list(self.config_findings) + list(self.policies.findings)
        for outcome in self.translation.outcomes.values():
            out.extend(outcome.findings)
        return out

    def close(self) -> None:
        if self.discovery is not None:
            self.discovery.close()


def load_inventory(source: ClusterSource, repo: RepoConfig) -> tuple[Inventory, Discovery | None]:
    if source.state is not None:
        wanted = [repo.cluster_for_context(c) for c in source.contexts] or None
        return read_snapshot(source.state, wanted), None
    targets = resolve_targets(
        repo, kubeconfigs=source.kubeconfigs, contexts=source.contexts, in_cluster=source.in_cluster
    )
    found = discover(targets, timeout=source.request_timeout, cluster_timeout=source.cluster_timeout)
    return found.inventory, found


def build_plan(root: Path, source: ClusterSource) -> Plan:
    repo, config_findings = load_repo_config(root)
    policies = load_and_check(root, status_path=repo.status.path)
    inventory, discovery = load_inventory(source, repo)
    translation = translate(policies, inventory, configured_clusters=inventory.clusters)
    return Plan(root, repo, policies, inventory, translation, discovery, config_findings)
