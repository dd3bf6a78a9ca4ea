"""Several independent control planes and one kubeconfig with a context per cluster."""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from .binaries import Binaries, require_binaries
from .controlplane import DEFAULT_SERVICE_CIDR, ControlPlane
from .crds import ISTIO_NETWORKING_CRDS, install_crds, load_crds
from .kubeconfig import KubeconfigEntry, write_kubeconfig
from .process import DEFAULT_STOP_TIMEOUT

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

_live_lock = threading.Lock()
_live: list[Clusters] = []


def admin_api_client(plane: ControlPlane) -> ApiClient:
    """An ``ApiClient`` for the admin user built from the files in the plane's ``pki`` dir."""
    cfg = Configuration(
        host=plane.server,
        ssl_ca_cert=str(plane.pki / "serving-ca.crt"),
        cert_file=str(plane.pki / "admin.crt"),
        key_file=str(plane.pki / "admin.key"),
    )
    return ApiClient(cfg)


def api_client_from_kubeconfig(kubeconfig: Path, context: str) -> ApiClient:
    """An independent ``ApiClient`` for one context (does not touch the global default config)."""
    client: ApiClient = kube_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), context=context
    )
    return client


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "user"


class Clusters:
    """N running control planes plus ``kubeconfig_path`` (context name == cluster name).

    Use as a context manager or call :meth:`stop`; an ``atexit`` hook stops leftovers.
    """

    def __init__(self, planes: list[ControlPlane], workdir: Path, *, owns_workdir: bool) -> None:
        self._planes = {p.name: p for p in planes}
        self.workdir = workdir
        self.owns_workdir = owns_workdir
        self.kubeconfig_path = workdir / "kubeconfig"
        self.start_seconds: float | None = None
        self._clients: list[ApiClient] = []
        self._stopped = False
        with _live_lock:
            _live.append(self)

    # -------------------------------------------------------------- access
    @property
    def names(self) -> list[str]:
        return list(self._planes)

    def __getitem__(self, name: str) -> ControlPlane:
        return self._planes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._planes

    def __iter__(self) -> Iterator[ControlPlane]:
        return iter(self._planes.values())

    def __len__(self) -> int:
        return len(self._planes)

    def write_kubeconfig(self, path: Path | None = None) -> Path:
        """Write the admin kubeconfig (all clusters) to ``path`` (default ``kubeconfig_path``)."""
        entries = [p.kubeconfig_entry() for p in self]
        return write_kubeconfig(path or self.kubeconfig_path, entries)

    def api_client(self, name: str, kubeconfig: Path | None = None) -> ApiClient:
        """A fresh ``ApiClient`` for context ``name`` of ``kubeconfig`` (default: the admin one).

        Closed by :meth:`stop`.
        """
        client = api_client_from_kubeconfig(kubeconfig or self.kubeconfig_path, name)
        self._clients.append(client)
        return client

    def dynamic_client(self, name: str, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.dynamic.DynamicClient`` for context ``name``.

        Each gets its own discovery ``cache_file`` in the work dir: the default cache path is
        derived from the host only and would be reused across runs with recycled random ports.
        """
        from kubernetes.dynamic import DynamicClient

        api = self.api_client(name, kubeconfig)
        cache = self.workdir / "discovery" / f"{name}-{len(self._clients)}.json"
        cache.parent.mkdir(parents=True, exist_ok=True)
        return DynamicClient(api, cache_file=str(cache))  # type: ignore[no-untyped-call]

    def kubeconfig_for_user(
        self,
        cluster: str | Sequence[str],
        user: str,
        groups: Sequence[str] = (),
        *,
        path: Path | None = None,
    ) -> Path:
        """Write a kubeconfig authenticating as ``user``/``groups`` via a client certificate.

        ``cluster`` is one cluster name or several (one context per cluster, named after it).
        The certificate is signed by each cluster's client CA, so the API server sees exactly that
        user -- e.g. ``system:serviceaccount:mesh-reconciler:mesh-reconciler`` in
        ``system:serviceaccounts`` -- and RBAC decides what it may do.
        """
        names = [cluster] if isinstance(cluster, str) else list(cluster)
        entries: list[KubeconfigEntry] = []
        for name in names:
            plane = self[name]
            entries.append(plane.kubeconfig_entry(user, plane.issue_client_cert(user, groups)))
        if path is None:
            path = self.workdir / "users" / f"{_safe_filename(user)}--{'_'.join(names)}.kubeconfig"
        return write_kubeconfig(path, entries)

    def install_crds(self, crds: list[dict[str, Any]], *, timeout: float = 60.0) -> None:
        """Install ``crds`` into every cluster (in parallel) and wait until they are served."""

        def one(plane: ControlPlane) -> None:
            with admin_api_client(plane) as api:
                install_crds(api, crds, timeout=timeout)

        with ThreadPoolExecutor(max_workers=max(1, len(self))) as pool:
            for fut in [pool.submit(one, p) for p in self]:
                fut.result()

    def ensure_running(self) -> None:
        """Restart whatever a fault hook stopped (see :meth:`ControlPlane.ensure_running`)."""
        for plane in self:
            plane.ensure_running()

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory per process (``kube-apiserver[<name>]``, ``etcd[<name>]``)."""
        out: dict[str, int] = {}
        for plane in self:
            out.update(plane.rss_bytes())
        return out

    # -------------------------------------------------------------- teardown
    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop all API servers and etcds (in parallel) and remove the work dir if we created it."""
        if self._stopped:
            return
        self._stopped = True
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()  # type: ignore[no-untyped-call]
        self._clients.clear()
        # No threads here: this also runs from atexit, when new threads can no longer start.
        for plane in self:
            plane.terminate_apiserver()  # all API servers shut down concurrently
        for plane in self:
            with contextlib.suppress(Exception):
                plane.stop(timeout)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with _live_lock, contextlib.suppress(ValueError):
            _live.remove(self)

    def __enter__(self) -> Clusters:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Clusters({self.names!r}, kubeconfig={str(self.kubeconfig_path)!r})"


def start_clusters(
    names: Sequence[str],
    workdir: Path | None = None,
    *,
    binaries: Binaries | None = None,
    crds: list[dict[str, Any]] | None = None,
    install_istio_crds: bool = True,
    service_cluster_ip_range: str = DEFAULT_SERVICE_CIDR,
    extra_apiserver_args: Sequence[str] = (),
    start_timeout: float | None = None,
) -> Clusters:
    """Start one control plane per name in parallel, write the kubeconfig, install CRDs.

    ``workdir``: where certificates, etcd data, logs and the kubeconfig go; a temporary
    directory (removed on stop) when ``None``, otherwise kept for inspection. ``crds`` defaults
    to the vendored Istio networking CRDs (unless ``install_istio_crds`` is false).
    Raises ``MissingBinariesError`` if the binaries are missing; on any failure everything
    already started is stopped again.
    """
    if not names:
        raise ValueError("start_clusters needs at least one cluster name")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate cluster names: {list(names)}")
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"cluster name {name!r} must be a DNS-1123 label")
    binaries = binaries or require_binaries()
    if crds is None and install_istio_crds:
        crds = load_crds(ISTIO_NETWORKING_CRDS)

    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="kubeharness-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    planes = [
        ControlPlane(
            name,
            root / name,
            binaries=binaries,
            service_cluster_ip_range=service_cluster_ip_range,
            extra_apiserver_args=extra_apiserver_args,
            start_timeout=start_timeout,
        )
        for name in names
    ]
    clusters = Clusters(planes, root, owns_workdir=owns)
    began = time.monotonic()

    def bring_up(plane: ControlPlane) -> None:
        plane.start()
        if crds:
            with admin_api_client(plane) as api:
                install_crds(api, crds)

    try:
        with ThreadPoolExecutor(max_workers=len(planes)) as pool:
            futures = [pool.submit(bring_up, p) for p in planes]
            errors = [f.exception() for f in futures]
        failures = [e for e in errors if e is not None]
        if failures:
            raise failures[0]
        clusters.write_kubeconfig()
    except BaseException:
        clusters.stop(timeout=5)
        raise
    clusters.start_seconds = time.monotonic() - began
    return clusters


def stop_all_clusters() -> None:
    """Stop every :class:`Clusters` still running (the ``atexit`` safety net)."""
    with _live_lock:
        leftovers = list(_live)
    for clusters in leftovers:
        with contextlib.suppress(Exception):
            clusters.stop(timeout=5)


atexit.register(stop_all_clusters)
