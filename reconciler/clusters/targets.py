"""Which clusters a run talks to, and how: kubeconfig files, contexts and cluster names.

Sources, like kubectl: ``--kubeconfig`` (repeatable) or ``KUBECONFIG`` (a ``:`` list), merged; every
context in them, or the ones named with ``--context``. When ``reconciler.yaml`` maps cluster names to
contexts and no ``--context`` is given, exactly those clusters are used. Inside a pod (the CronJob)
the pod's own service account reaches the local cluster (``--in-cluster``) and mounted kubeconfig
files reach the others.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import ReconcilerError
from reconciler.repo_config import RepoConfig

if TYPE_CHECKING:
    from kubernetes import client

# The kubernetes client is imported where it is used, not with this module: its kubeconfig loader
# brings requests, oauthlib and the client's models (~85 ms of CPU), which the commands that never
# read a kubeconfig (validate, render --state, --help) need not pay, and which a pass imports while
# git runs (:func:`preload_client`).


def client_loaded() -> bool:
    """Whether the kubernetes client's kubeconfig loader is imported already."""
    return "kubernetes.config.kube_config" in sys.modules


def preload_client() -> None:
    """Import the kubernetes client's kubeconfig loader now (e.g. while git runs in its own
    processes, ``reconcile._reconcile``), rather than when the first cluster is connected."""
    import kubernetes.config.kube_config  # noqa: F401


IN_CLUSTER = "in-cluster"


class TargetError(ReconcilerError):
    """The kubeconfig/context selection cannot be satisfied (message says what to fix)."""


@dataclass(frozen=True)
class ClusterTarget:
    name: str
    context: str
    kubeconfig: str | None = None
    """``:``-joined kubeconfig files; None means in-cluster config."""

    def api_client(self) -> client.ApiClient:
        """The kubernetes client's view of this cluster: its ``configuration`` (address, TLS files,
        credentials with their refresh) is what :class:`KubeClient`'s transport is made from; the
        requests themselves never go through the client's urllib3 stack. Its retries stay off all
        the same (urllib3 would retry 429/503 by itself), so that anything using the ApiClient
        directly is retried only by a policy that counts and logs each attempt.
        """
        from kubernetes import client, config

        configuration = client.Configuration()
        if self.kubeconfig is None:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config_from_dict(
                merged_kubeconfig(self.kubeconfig),
                context=self.context,
                client_configuration=configuration,
                persist_config=False,
            )
        configuration.retries = False
        return client.ApiClient(configuration)


def merged_kubeconfig(files: str) -> Any:
    """The ``:``-joined kubeconfig files merged the way kubectl merges them (first one wins).

    Parsed once per content of the files rather than once per context: the kubernetes client parses
    with PyYAML's pure-Python loader, ~10 ms for a 7 kB kubeconfig with three contexts, which a pass
    over N clusters paid N+1 times. Keyed on each file's mtime and size, so a kubeconfig rotated
    under a long-running ``serve`` is read again. The result keeps each entry's file path, so
    relative certificate paths resolve against the file they came from, as with ``load_kube_config``.
    """
    stamps = []
    for path in split_kubeconfig([files]):
        try:
            st = os.stat(os.path.expanduser(path))
        except OSError:
            continue  # the client skips a missing file too
        stamps.append((path, st.st_mtime_ns, st.st_size))
    return _merged(files, tuple(stamps))


@functools.lru_cache(maxsize=8)
def _merged(files: str, stamps: tuple[tuple[str, int, int], ...]) -> Any:
    del stamps  # part of the cache key only
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigMerger

    merged = KubeConfigMerger(files).config
    if merged is None:
        raise ConfigException(f"Invalid kube-config file {files}: no configuration found")
    return merged


def split_kubeconfig(entries: Sequence[str] | None) -> list[str]:
    """``a``, ``b:c`` -> ``[a, b, c]``: kubectl's KUBECONFIG list syntax, for flags and variables alike."""
    return [p for entry in entries or [] for p in entry.split(os.pathsep) if p]


def kubeconfig_files(explicit: Sequence[str] | None) -> list[str]:
    files = split_kubeconfig(explicit)
    if not files and os.environ.get("KUBECONFIG"):
        files = split_kubeconfig([os.environ["KUBECONFIG"]])
    if not files:
        default = Path.home() / ".kube" / "config"
        if default.exists():
            files = [str(default)]
    return files


def resolve_targets(
    repo: RepoConfig,
    *,
    kubeconfigs: Sequence[str] | None = None,
    contexts: Sequence[str] | None = None,
    in_cluster: bool = False,
) -> list[ClusterTarget]:
    targets: list[ClusterTarget] = []
    if in_cluster:
        name = repo.management_cluster or IN_CLUSTER
        targets.append(ClusterTarget(name=name, context=IN_CLUSTER, kubeconfig=None))
    files = kubeconfig_files(kubeconfigs)
    if not files:
        if targets:
            return targets
        raise TargetError(
            "no kubeconfig: pass --kubeconfig, set KUBECONFIG, use --in-cluster, or read a snapshot with --state DIR"
        )
    for f in files:
        if not Path(f).is_file():
            raise TargetError(f"kubeconfig {f} does not exist")
    merged = os.pathsep.join(files)
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import KubeConfigLoader

    try:
        available = KubeConfigLoader(merged_kubeconfig(merged), config_base_path=None).list_contexts()
    except (ConfigException, OSError, ValueError) as exc:
        raise TargetError(f"cannot read kubeconfig {merged}: {exc}") from None
    names = [c["name"] for c in available or []]
    if contexts:
        wanted = list(contexts)
    elif repo.clusters:
        wanted = [entry.context for _, entry in sorted(repo.clusters.items())]
    else:
        wanted = names
    seen = {t.name for t in targets}
    wanted = [c for c in wanted if repo.cluster_for_context(c) not in seen]  # already reached in-cluster
    missing = [c for c in wanted if c not in names]
    if missing:
        raise TargetError(
            f"context(s) {', '.join(missing)} not found in kubeconfig {merged} (available: {', '.join(names) or 'none'})"
        )
    for ctx in wanted:
        name = repo.cluster_for_context(ctx)
        if name in seen:
            continue
        seen.add(name)
        targets.append(ClusterTarget(name=name, context=ctx, kubeconfig=merged))
    return sorted(targets, key=lambda t: t.name)
