"""Command line: ``python -m kubeharness up|check``.

``up`` starts the clusters, writes the kubeconfig (only once everything is ready, so a script can
wait for the file to appear), optionally seeds them, prints the kubeconfig path on stdout and
waits for SIGINT/SIGTERM, then tears everything down.

    PYTHONPATH=tools python -m kubeharness up --clusters mgmt-cluster,remote-cluster \\
        --kubeconfig .demo/kubeconfig --seed bookinfo
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from .binaries import find_binaries, missing_binaries_message
from .clusters import start_clusters
from .controlplane import DEFAULT_SERVICE_CIDR
from .seed import BOOKINFO_DEFAULTS, bookinfo_topology, seed_cluster

SEEDS = ("bookinfo",)


def _log(msg: str) -> None:
    print(f"[kubeharness] {msg}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kubeharness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start clusters and wait for SIGINT/SIGTERM")
    up.add_argument("--clusters", required=True, help="comma-separated cluster (= context) names")
    up.add_argument(
        "--kubeconfig", type=Path, help="also write the kubeconfig here (default: in the work dir)"
    )
    up.add_argument(
        "--workdir", type=Path, help="keep certificates, etcd data and logs here (default: temp dir)"
    )
    up.add_argument("--seed", choices=SEEDS, help="seed every cluster with a bundled topology")
    up.add_argument("--service-cluster-ip-range", default=DEFAULT_SERVICE_CIDR)
    up.add_argument("--no-istio-crds", action="store_true", help="do not install the Istio networking CRDs")
    sub.add_parser("check", help="report whether the kube-apiserver/etcd binaries are available")
    return parser


def _up(args: argparse.Namespace) -> int:
    names = [n.strip() for n in str(args.clusters).split(",") if n.strip()]
    if args.seed == "bookinfo":
        unknown = [n for n in names if n not in BOOKINFO_DEFAULTS]
        if unknown:
            print(
                f"--seed bookinfo knows {', '.join(BOOKINFO_DEFAULTS)}; not {', '.join(unknown)}",
                file=sys.stderr,
            )
            return 2
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        _log(f"got signal {signum}, shutting down")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    if args.kubeconfig is not None:
        args.kubeconfig.unlink(missing_ok=True)  # appears again only when everything is ready
    began = time.monotonic()
    clusters = start_clusters(
        names,
        args.workdir,
        install_istio_crds=not args.no_istio_crds,
        service_cluster_ip_range=args.service_cluster_ip_range,
    )
    try:
        _log(f"{len(clusters)} cluster(s) up in {time.monotonic() - began:.1f}s")
        for plane in clusters:
            _log(f"  {plane.name}: {plane.server} (etcd {plane.etcd_url}, logs in {plane.dir})")
        if args.seed == "bookinfo":
            for name in names:
                with clusters.api_client(name) as api:
                    result = seed_cluster(api, bookinfo_topology(name))
                _log(f"  seeded {name}: {len(result.objects)} objects")
                for note in result.skipped:
                    _log(f"    skipped {note}")
        path = clusters.kubeconfig_path
        if args.kubeconfig is not None:
            path = clusters.write_kubeconfig(args.kubeconfig)
        print(path, flush=True)
        _log("ready; Ctrl-C (SIGINT) or SIGTERM stops the clusters")
        while not stop.wait(1.0):
            if not all(p.running() for p in clusters):
                _log("an API server exited unexpectedly; shutting down")
                return 1
        return 0
    finally:
        clusters.stop()
        if args.kubeconfig is not None:
            args.kubeconfig.unlink(missing_ok=True)
        _log("stopped")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        found = find_binaries()
        if found is None:
            print(missing_binaries_message(), file=sys.stderr)
            return 1
        print(f"kube-apiserver: {found.kube_apiserver}\netcd: {found.etcd}")
        return 0
    if find_binaries() is None:
        print(missing_binaries_message(), file=sys.stderr)
        return 3
    return _up(args)


if __name__ == "__main__":
    raise SystemExit(main())
