"""Installing CRDs (by default the vendored Istio networking CRDs) with server-side apply."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient

from . import kube

ISTIO_NETWORKING_CRDS = Path(__file__).with_name("istio-networking-crds.yaml")
CRD_API_VERSION = "apiextensions.k8s.io/v1"

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@functools.lru_cache(maxsize=8)
def _load(path: str) -> tuple[dict[str, Any], ...]:
    with open(path, encoding="utf-8") as fh:
        docs = [d for d in yaml.load_all(fh, Loader=_Loader) if d]
    return tuple(d for d in docs if d.get("kind") == "CustomResourceDefinition")


def load_crds(path: Path = ISTIO_NETWORKING_CRDS, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """CRD documents from a multi-document YAML file, optionally only those in ``names``.

    Callers get their own copies (safe to mutate).
    """
    crds = _load(str(path))
    wanted = set(names) if names is not None else None
    selected = [c for c in crds if wanted is None or c["metadata"]["name"] in wanted]
    if wanted is not None:
        missing = wanted - {c["metadata"]["name"] for c in selected}
        if missing:
            raise LookupError(f"CRDs not found in {path}: {sorted(missing)}")
    return [copy.deepcopy(c) for c in selected]


def _established(crd: dict[str, Any]) -> bool:
    for cond in (crd.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Established" and cond.get("status") == "True":
            return True
    return False


def install_crds(api: ApiClient, crds: list[dict[str, Any]], *, timeout: float = 60.0) -> None:
    """Server-side apply every CRD, wait until each is Established and served by discovery."""
    for crd in crds:
        body = {k: v for k, v in crd.items() if k != "status"}
        kube.apply(api, body, field_manager="kubeharness-crds")
    for crd in crds:
        name = str(crd["metadata"]["name"])

        def established(n: str = name) -> bool:
            return _established(kube.get(api, CRD_API_VERSION, "CustomResourceDefinition", n))

        kube.wait_for(established, timeout=timeout, what=f"CRD {name} Established")
    for crd in crds:
        group = crd["spec"]["group"]
        plural = crd["spec"]["names"]["plural"]
        for version in crd["spec"]["versions"]:
            if not version.get("served", True):
                continue
            api_version = f"{group}/{version['name']}"

            def served(av: str = api_version, p: str = plural) -> bool:
                listing = kube.request(api, "GET", f"/apis/{av}")
                return any(r.get("name") == p for r in listing.get("resources", []))

            kube.wait_for(served, timeout=timeout, what=f"discovery of {plural}.{api_version}")
    kube.forget_discovery(api)
