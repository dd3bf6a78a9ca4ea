"""The main job on the bundled example, in one command (``make demo``).

1. builds kube-apiserver/etcd on first use (tools/build-k8s-assets.sh; cached afterwards),
2. starts two real local clusters, ``mgmt-cluster`` (us-east-1/us-east-1a) and ``remote-cluster``
   (us-east-2/us-east-2b), with the Istio CRDs, and seeds the bookinfo topology,
3. turns ``policies/`` into a Git repository (a local bare repository as the "remote"),
4. runs ``reconciler reconcile`` against it — the changes it applied and the status commit it made —
   and ``reconciler explain`` for a client in us-east-1/us-east-1a,
5. tears everything down: the clusters (``--keep`` leaves them running until Ctrl-C) and the
   repositories (unless ``--workdir DIR`` says where to keep them).

    .venv/bin/python tools/demo.py [--keep] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from kubeharness import find_binaries, kube, start_clusters  # noqa: E402
from kubeharness.seed import bookinfo_topologies, seed_cluster  # noqa: E402

CLUSTERS = ["mgmt-cluster", "remote-cluster"]


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def run(
    cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, check: bool = True
) -> int:
    print(f"$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=cwd, env=env, check=check).returncode


def git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Platform Team",
        "GIT_AUTHOR_EMAIL": "platform@example.com",
        "GIT_COMMITTER_NAME": "Platform Team",
        "GIT_COMMITTER_EMAIL": "platform@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def ensure_binaries() -> None:
    if find_binaries() is not None:
        return
    step("Building kube-apiserver and etcd from the Go module proxy (first run only; ~8 minutes on 2 cores)")
    subprocess.run([str(REPO / "tools" / "build-k8s-assets.sh")], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="keep the clusters running until Ctrl-C")
    parser.add_argument(
        "--workdir", type=Path, help="where to keep the git repositories (default: a temp dir)"
    )
    args = parser.parse_args()

    ensure_binaries()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mesh-reconciler-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    reconciler = str(Path(sys.executable).parent / "reconciler")

    step(f"Starting {len(CLUSTERS)} local clusters (real kube-apiserver + etcd each, Istio CRDs installed)")
    start = time.monotonic()
    clusters = start_clusters(CLUSTERS)
    try:
        kubeconfig = clusters.kubeconfig_path
        print(
            f"up in {time.monotonic() - start:.1f}s; kubeconfig {kubeconfig} (contexts: {', '.join(CLUSTERS)})"
        )

        step("Seeding the bookinfo topology: node localities, reviews services, istiod, east-west gateways")
        for name, topology in bookinfo_topologies(CLUSTERS).items():
            api = clusters.api_client(name)
            seed_cluster(api, topology)
            kube.apply(
                api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh-reconciler"}}
            )
            node = topology.nodes[0]
            print(
                f"  {name}: node {node.name} in {node.region}/{node.zone}, "
                f"reviews {', '.join(p.name for p in topology.pods)}, gateway {topology.gateway.address if topology.gateway else '-'}"
            )

        step("Creating the policy repository from policies/ (a local bare repository plays the Git server)")
        bare, clone = work / "mesh-policy.git", work / "mesh-policy"
        for path in (bare, clone):
            shutil.rmtree(path, ignore_errors=True)
        git(work, "init", "-q", "--bare", "-b", "main", str(bare))
        git(work, "clone", "-q", str(bare), str(clone))
        for item in sorted((REPO / "policies").iterdir()):
            shutil.copy(item, clone / item.name)
        git(clone, "add", "-A")
        git(clone, "commit", "-q", "-m", "bookinfo: locality failover for reviews")
        git(clone, "push", "-q", "origin", "HEAD:main")
        print(f"  file://{bare} ({', '.join(sorted(p.name for p in (REPO / 'policies').iterdir()))})")

        env = {**os.environ, "RECONCILER_LOG_FORMAT": "text"}
        reconcile = [
            reconciler,
            "reconcile",
            "--repo",
            f"file://{bare}",
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(work / "cache"),
            "--lease-cluster",
            "mgmt-cluster",
        ]
        step("reconciler validate (what a pull-request check runs)")
        run([reconciler, "validate", str(clone)], env=env)

        step(
            "reconciler reconcile: pull, validate, discover, translate, diff, server-side apply, status commit"
        )
        code = run(reconcile, env=env, check=False)
        print(f"exit code {code} (0 = converged)")

        step("The status commit in the policy repository")
        git(clone, "pull", "-q", "--ff-only", "origin", "main")
        subprocess.run(
            ["git", "--no-pager", "log", "-1", "--stat", "--format=%h %an: %s"], cwd=clone, check=True
        )
        print((clone / "status" / "README.md").read_text())

        step("reconciler explain: where a client in us-east-1/us-east-1a sends reviews.global traffic")
        explain = [
            reconciler,
            "explain",
            "bookinfo-global",
            str(clone),
            "--from",
            "us-east-1/us-east-1a",
            "--kubeconfig",
            str(kubeconfig),
        ]
        run(explain, env=env)
        step("... and when mgmt-cluster's endpoints are ejected (failover)")
        run([*explain, "--failed", "mgmt-cluster"], env=env)

        step("A second reconcile: nothing changed, so no writes and no status commit")
        run(reconcile, env=env, check=False)

        if args.keep:
            step("Clusters are running. In another shell:")
            print(
                f"  export KUBECONFIG={kubeconfig}\n  kubectl get destinationrules,serviceentries -A\n"
                "Press Ctrl-C to stop them."
            )
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return code
    finally:
        step("Stopping the clusters")
        clusters.stop()
        if args.workdir is None:  # ours: the repositories and cache go with the clusters
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
