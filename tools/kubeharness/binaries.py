"""Locating the kube-apiserver and etcd binaries.

Lookup order for each binary (``kube-apiserver``, ``etcd``), envtest-compatible:

1. ``TEST_ASSET_KUBE_APISERVER`` / ``TEST_ASSET_ETCD`` (path of the binary itself);
2. ``$KUBEBUILDER_ASSETS/<name>`` (a directory holding both binaries);
3. ``~/.cache/mesh-reconciler/k8s/1.37.2/<name>`` (where ``tools/build-k8s-assets.sh`` puts them;
   ``$XDG_CACHE_HOME`` replaces ``~/.cache`` when set, as in the script).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"

HOW_TO_GET_BINARIES = (
    "kube-apiserver/etcd binaries not found. Build them once with `tools/build-k8s-assets.sh` "
    "(needs Go >= 1.26 and the Go module proxy; ~8 minutes on 2 cores; cached in {cache}), "
    "or point KUBEBUILDER_ASSETS at a directory holding `kube-apiserver` and `etcd`, "
    "or set TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD to the binaries themselves."
)


class MissingBinariesError(RuntimeError):
    """Raised when kube-apiserver or etcd cannot be found; the message says how to get them."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the two control-plane binaries."""

    kube_apiserver: Path
    etcd: Path


def default_cache_dir() -> Path:
    """The directory ``tools/build-k8s-assets.sh`` fills when KUBEBUILDER_ASSETS is not set."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "mesh-reconciler" / "k8s" / K8S_VERSION


def missing_binaries_message() -> str:
    """Human-readable explanation of how to obtain the binaries."""
    return HOW_TO_GET_BINARIES.format(cache=default_cache_dir())


def _env_name(name: str) -> str:
    return "TEST_ASSET_" + "".join(c if c.isalnum() else "_" for c in name.upper())


def find_binary(name: str) -> Path | None:
    """Return the first executable candidate for ``name`` in the documented lookup order."""
    candidates: list[Path] = []
    explicit = os.environ.get(_env_name(name))
    if explicit:
        candidates.append(Path(explicit))
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidates.append(Path(assets) / name)
    candidates.append(default_cache_dir() / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.resolve()
    return None


def find_binaries() -> Binaries | None:
    """Both binaries, or ``None`` when either is missing (see :func:`missing_binaries_message`)."""
    apiserver = find_binary("kube-apiserver")
    etcd = find_binary("etcd")
    if apiserver is None or etcd is None:
        return None
    return Binaries(kube_apiserver=apiserver, etcd=etcd)


def require_binaries() -> Binaries:
    """Like :func:`find_binaries` but raises :class:`MissingBinariesError` with instructions."""
    found = find_binaries()
    if found is None:
        raise MissingBinariesError(missing_binaries_message())
    return found
