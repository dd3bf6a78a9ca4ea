"""Writing kubeconfig files (inline certificate data, one context per cluster)."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .certs import KeyPair


@dataclass(frozen=True)
class KubeconfigEntry:
    """One cluster + user + context; the context and the cluster share ``name``."""

    name: str
    server: str
    ca_pem: bytes
    user: str
    credentials: KeyPair


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_kubeconfig(entries: list[KubeconfigEntry], current: str | None = None) -> dict[str, Any]:
    """The kubeconfig document as a dict."""
    if not entries:
        raise ValueError("a kubeconfig needs at least one cluster")
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": e.name, "cluster": {"server": e.server, "certificate-authority-data": _b64(e.ca_pem)}}
            for e in entries
        ],
        "users": [
            {
                "name": e.user,
                "user": {
                    "client-certificate-data": _b64(e.credentials.cert_pem),
                    "client-key-data": _b64(e.credentials.key_pem),
                },
            }
            for e in entries
        ],
        "contexts": [{"name": e.name, "context": {"cluster": e.name, "user": e.user}} for e in entries],
        "current-context": current or entries[0].name,
    }


def write_kubeconfig(path: Path, entries: list[KubeconfigEntry], current: str | None = None) -> Path:
    """Write the kubeconfig atomically with mode 0600 and return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(render_kubeconfig(entries, current), fh, sort_keys=False)
    os.replace(tmp, path)
    return path
