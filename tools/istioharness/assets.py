"""Locating the istiod build (pilot-discovery, the fakesds stand-in and Istio's CRDs).

Lookup order: ``$ISTIO_ASSETS`` (a directory holding all three), then
``~/.cache/mesh-reconciler/istio/<release>-<revision>/`` where ``tools/build-istio-assets.sh``
puts them (``$XDG_CACHE_HOME`` replaces ``~/.cache`` when set, as in the script).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

RELEASES = {
    "1.31": "eed52ebb66ad",  # istio.io/istio v0.0.0-20260827124520-eed52ebb66ad (master after 1.30)
    "1.30": "9739e10eb9d7",  # istio.io/istio v0.0.0-20260826214018-9739e10eb9d7 (release-1.30 branch)
}
"""Istio release -> the module revision tools/build-istio-assets.sh builds for it."""

DEFAULT_RELEASE = "1.31"


@dataclass(frozen=True)
class IstioAssets:
    release: str
    pilot_discovery: Path
    fakesds: Path
    crds: Path

    @property
    def build_version(self) -> str:
        """What ``pilot-discovery version`` reports, e.g. ``1.31-dev+eed52ebb66ad``."""
        return f"{self.release}-dev+{RELEASES[self.release]}"


def default_assets_dir(release: str = DEFAULT_RELEASE) -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "mesh-reconciler" / "istio" / f"{release}-{RELEASES[release]}"


def find_istio_assets(release: str = DEFAULT_RELEASE) -> IstioAssets | None:
    """The build for ``release`` if every part of it is present, else ``None``."""
    explicit = os.environ.get("ISTIO_ASSETS") if release == DEFAULT_RELEASE else None
    folder = Path(explicit) if explicit else default_assets_dir(release)
    assets = IstioAssets(release, folder / "pilot-discovery", folder / "fakesds", folder / "crd-all.gen.yaml")
    for binary in (assets.pilot_discovery, assets.fakesds):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            return None
    return assets if assets.crds.is_file() else None


def missing_istio_message(release: str = DEFAULT_RELEASE) -> str:
    env = "" if release == DEFAULT_RELEASE else f"ISTIO_RELEASE={release} "
    return (
        f"istiod {release} not built: run `{env}tools/build-istio-assets.sh` once (Go >= 1.26 and the Go "
        f"module proxy; ~10-25 min on 2 cores; cached in {default_assets_dir(release)}), or point "
        "ISTIO_ASSETS at a directory holding pilot-discovery, fakesds and crd-all.gen.yaml."
    )
