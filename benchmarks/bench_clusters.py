"""Benchmark: what a pass costs against real API servers, next to kubectl and the bare API calls.

Starts 3 real clusters (kubeharness: kube-apiserver + etcd each, Istio CRDs, audit logs), each in
its own region and seeded with K services (Service, Pod, EndpointSlice; a node with region/zone
labels, istiod and an east-west gateway), and a policy repository (``git init``, committed, plus a
bare clone as the remote) with K VirtualDestinations (each selecting its own service in all 3
clusters) and a TrafficPolicy for every other one. Then, for mesh-reconciler (the real CLI in a
subprocess: wall time, CPU time and peak RSS of the child from ``wait4``, API requests from the
clusters' audit logs):

1. first sync: ``reconciler reconcile --no-commit`` on empty clusters (includes the first clone;
   applies and writes status files, commits nothing: the same work as ``kubectl apply``), printing
   the change set as text like the CronJob (``cronjob.yaml``) does;
2. no-op ``reconciler diff``;
3. no-op ``reconciler reconcile`` as a CronJob runs it: committing status, after one pass that
   committed the first sync's status (so it fetches, plans, finds nothing to apply or commit);
4. one drifted object: a DestinationRule field changed by another field manager, then reconcile.

Measured in the same run, on the same objects (``reconciler render -o yaml``, split per cluster):

* kubectl: ``kubectl apply --server-side`` per context, sequentially and in parallel, on empty
  clusters (so it creates, like the first sync), and ``kubectl diff --server-side`` for the no-op;
* floors, with the python kubernetes client in this process: the bare server-side-apply PATCHes
  (one per object, no reads, one thread per cluster) on empty clusters; the LISTs discovery makes
  (``reconciler/clusters/discover.py`` ``DISCOVERY_LISTS``), clusters in parallel; ``git fetch``
  of the policy repository; one PATCH.

Prints one markdown table (medians of ``--repeat``) and a few lines of notes; ``--json PATH``
writes every number. Everything listens on 127.0.0.1; the clusters are always stopped.

    .venv/bin/python benchmarks/bench_clusters.py [--k 100] [--repeat 1] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

from kubeharness import (  # noqa: E402
    Clusters,
    MissingBinariesError,
    kube,
    missing_binaries_message,
    start_clusters,
)
from kubeharness.seed import App, cluster_topology, seed_cluster  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402

BIN = Path(sys.executable).parent
RECONCILER = str(BIN / "reconciler")
KUBECTL = str(BIN / "kubectl")

# name, region, zone, east-west gateway address, node IP (API data only: nothing is sent there)
CLUSTERS = [
    ("mgmt-cluster", "us-east-1", "us-east-1a", "172.18.0.10", "172.18.0.2"),
    ("remote-cluster", "us-west-2", "us-west-2b", "172.18.0.11", "172.18.0.3"),
    ("cluster-3", "eu-west-1", "eu-west-1a", "172.18.0.12", "172.18.0.4"),
]
NAMES = [c[0] for c in CLUSTERS]
MGMT = NAMES[0]
APPS_NS = "apps"
LEASE_NS = "mesh-reconciler"
ADMIN = "admin"  # the user of the harness's admin kubeconfig (the CLI, kubectl and the floors use it)
DRIFT_MANAGER = "kubectl-edit"

MANAGED = "app.kubernetes.io/managed-by=mesh-reconciler"
ISTIO = "/apis/networking.istio.io/v1"
ISTIO_PLURALS = {
    "ServiceEntry": "serviceentries",
    "DestinationRule": "destinationrules",
    "VirtualService": "virtualservices",
}
# What discovery LISTs per cluster (reconciler/clusters/discover.py DISCOVERY_LISTS), as REST calls.
DISCOVERY_LISTS: tuple[tuple[str, str | None], ...] = (
    ("/api/v1/nodes", None),
    ("/api/v1/services", None),
    ("/apis/discovery.k8s.io/v1/endpointslices", None),
    ("/apis/apps/v1/deployments", "app=istiod"),
    *((f"{ISTIO}/{plural}", MANAGED) for plural in ISTIO_PLURALS.values()),
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Platform Team",
    "GIT_AUTHOR_EMAIL": "platform@example.com",
    "GIT_COMMITTER_NAME": "Platform Team",
    "GIT_COMMITTER_EMAIL": "platform@example.com",
}


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- inputs
def write_policies(root: Path, k: int) -> None:
    """K VirtualDestinations (svc-i selected by label in every cluster), a TrafficPolicy for every
    other one (routing svc-i in one cluster to the VirtualDestination), a VirtualMesh and
    reconciler.yaml naming the clusters (cluster name == kube context)."""
    meshes = "".join(f"    - {{name: istiod-istio-system-{n}, namespace: gloo-mesh}}\n" for n in NAMES)
    (root / "virtual-mesh.yaml").write_text(
        "apiVersion: networking.mesh.gloo.solo.io/v1\nkind: VirtualMesh\n"
        f"metadata: {{name: virtual-mesh, namespace: gloo-mesh}}\nspec:\n  meshes:\n{meshes}"
    )
    clusters = "".join(f"  {n}: {n}\n" for n in NAMES)
    (root / "reconciler.yaml").write_text(
        f"clusters:\n{clusters}managementCluster: {MGMT}\nstatus:\n  path: status\n"
        "prune:\n  enabled: true\n  maxPruneRatio: 0.5\n"
    )
    per_file = 100
    for start in range(0, k, per_file):
        docs = []
        for i in range(start, min(k, start + per_file)):
            docs.append(f"""---
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: svc-{i}, namespace: gloo-mesh}}
spec:
  hostname: svc-{i}.global
  port: {{number: 8080, protocol: http}}
  virtualMesh: {{name: virtual-mesh, namespace: gloo-mesh}}
  localized:
    outlierDetection: {{consecutiveErrors: 2, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 100}}
    destinationSelectors: [{{kubeServiceMatcher: {{labels: {{app: svc-{i}}}}}}}]
    failoverDirectives:
      - from: {{region: us-east-1}}
        to: [{{region: us-west-2}}, {{region: eu-west-1}}]
""")
            if i % 2 == 0:
                docs.append(f"""---
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {{name: shift-{i}, namespace: {APPS_NS}}}
spec:
  destinationSelector: [{{kubeServiceRefs: {{services: [{{name: svc-{i}, namespace: {APPS_NS}, clusterName: {NAMES[(i // 2) % len(NAMES)]}}}]}}}}]
  policy: {{trafficShift: {{destinations: [{{virtualDestination: {{name: svc-{i}, namespace: gloo-mesh}}}}]}}}}
""")
        (root / f"svc-{start:05d}.yaml").write_text("".join(docs))


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True, timeout=120
    ).stdout.strip()


def make_repo(tmp: Path, k: int) -> tuple[Path, Path]:
    """The policy repository (a working tree, committed) and a bare clone of it (the remote)."""
    work, bare = tmp / "policy", tmp / "policy.git"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    write_policies(work, k)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"{k} VirtualDestinations")
    git(tmp, "clone", "-q", "--bare", str(work), str(bare))
    return work, bare


def seed(clusters: Clusters, k: int) -> None:
    def one(spec: tuple[str, str, str, str, str], index: int) -> None:
        name, region, zone, gateway, node_ip = spec
        apps = [
            App(
                f"svc-{i}",
                APPS_NS,
                {"v1": f"10.{index + 1}.{i // 250}.{i % 250 + 1}"},
                port=8080,
                image="registry.k8s.io/pause:3.10",
            )
            for i in range(k)
        ]
        topology = cluster_topology(
            name,
            region=region,
            zone=zone,
            gateway_address=gateway,
            node_ip=node_ip,
            namespaces=("istio-system", "gloo-mesh", APPS_NS, LEASE_NS),
            apps=apps,
        )
        result = seed_cluster(clusters.api_client(name), topology)
        if result.skipped:
            raise RuntimeError(f"{name}: seeding skipped {result.skipped[:3]}")

    with ThreadPoolExecutor(max_workers=len(CLUSTERS)) as pool:
        for fut in [pool.submit(one, spec, i) for i, spec in enumerate(CLUSTERS)]:
            fut.result()


# ---------------------------------------------------------------------------------- child processes
@dataclass
class Child:
    """One finished child process: wall time, its own CPU time and peak RSS (``wait4``)."""

    cmd: list[str]
    rc: int
    wall: float
    cpu: float
    maxrss_mb: float
    stdout: str = field(repr=False)
    stderr: str = field(repr=False)


_SPAWNER = r"""
import json, os, sys, time
for line in sys.stdin:
    req = json.loads(line)
    pids, errors = [], []
    for cmd, out, err in zip(req["cmds"], req["out"], req["err"]):
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        ]
        try:
            pids.append(os.posix_spawnp(cmd[0], cmd, req["env"], file_actions=actions, setsid=True))
        except OSError as exc:
            errors.append(f"{cmd[0]}: {exc}")
    print(json.dumps({"pids": pids, "errors": errors}), flush=True)
    left = set(pids)
    while left:
        pid, status, usage = os.wait4(-1, 0)
        if pid in left:
            left.discard(pid)
            print(json.dumps({"pid": pid, "rc": os.waitstatus_to_exitcode(status), "end": time.monotonic(),
                              "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}), flush=True)
"""


class _Spawner:
    """Starts the measured commands from a small process of its own, and reaps them with ``wait4``.

    Why not from this process: Linux starts a child's peak RSS (``ru_maxrss``) at its parent's RSS
    (the parent's pages count in the child until ``exec``, and ``exec`` records that high-water
    mark), so every child of this benchmark -- which holds thousands of manifests and API clients,
    ~200 MB -- reported at least that. The spawner is a bare ``python -S`` (~10 MB), the floor any
    child's figure now has. ``CLOCK_MONOTONIC`` is system-wide: its end times compare with ours.
    """

    _proc: subprocess.Popen[str] | None = None

    @classmethod
    def run(
        cls,
        cmds: Sequence[list[str]],
        env: Mapping[str, str],
        outs: list[Path],
        errs: list[Path],
        deadline: float,
    ) -> dict[int, dict[str, Any]]:
        if cls._proc is None or cls._proc.poll() is not None:
            cls._proc = subprocess.Popen(
                [sys.executable, "-S", "-u", "-c", _SPAWNER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        proc = cls._proc
        assert proc.stdin is not None and proc.stdout is not None
        request = {
            "cmds": [list(c) for c in cmds],
            "env": dict(env),
            "out": [str(o) for o in outs],
            "err": [str(e) for e in errs],
        }
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        started = json.loads(proc.stdout.readline())
        if started["errors"]:
            raise RuntimeError(f"cannot start: {'; '.join(started['errors'])}")
        pids: list[int] = started["pids"]
        results: dict[int, dict[str, Any]] = {}
        killed = False
        while len(results) < len(pids):
            wait = deadline - time.monotonic() if not killed else 10.0
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, wait))
            if ready:
                done = json.loads(proc.stdout.readline())
                results[done["pid"]] = done
            elif not killed:  # past the deadline: kill every process group, then collect them
                killed = True
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
            else:
                raise RuntimeError("the spawner lost track of killed children")
        if killed:
            raise TimeoutError(f"{[' '.join(c[:3]) for c in cmds]} did not finish in time")
        return {pid: results[pid] for pid in pids}


def run_children(
    cmds: Sequence[list[str]], *, timeout: float, env: Mapping[str, str] | None = None
) -> list[Child]:
    """Start ``cmds`` at once and reap each with ``os.wait4`` (its exact CPU and peak RSS, including
    the descendants it waited for, e.g. git), from :class:`_Spawner`. Bounded: past ``timeout``
    the process groups are killed."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-child-"))
    full_env = {**os.environ, **GIT_ENV, "RECONCILER_LOG_FORMAT": "json", **(env or {})}
    try:
        outs = [tmp / f"{n}.out" for n in range(len(cmds))]
        errs = [tmp / f"{n}.err" for n in range(len(cmds))]
        start = time.monotonic()
        results = _Spawner.run(cmds, full_env, outs, errs, start + timeout)
        return [
            Child(
                cmd=list(cmd),
                rc=done["rc"],
                wall=done["end"] - start,
                cpu=done["cpu"],
                maxrss_mb=done["maxrss_kb"] / 1024,
                stdout=out.read_text(errors="replace"),
                stderr=err.read_text(errors="replace"),
            )
            for done, cmd, out, err in zip(results.values(), cmds, outs, errs, strict=True)
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_child(cmd: list[str], *, timeout: float, ok: Iterable[int] = (0,)) -> Child:
    [child] = run_children([cmd], timeout=timeout)
    if child.rc not in set(ok):
        raise RuntimeError(
            f"{' '.join(cmd)} exited {child.rc}:\n{child.stderr[-3000:]}\n{child.stdout[-2000:]}"
        )
    return child


# ---------------------------------------------------------------------------------- API servers
class Servers:
    """Audit-log request counts and CPU time of the clusters' kube-apiserver and etcd processes."""

    def __init__(self, clusters: Clusters) -> None:
        self.clusters = clusters
        needle = str(clusters.workdir)
        self.procs = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(needle in part for part in (p.info["cmdline"] or []))
        ]

    def mark(self) -> tuple[dict[str, Any], float]:
        return {n: self.clusters[n].audit_mark() for n in NAMES}, self.cpu()

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def since(self, mark: tuple[dict[str, Any], float]) -> Requests:
        marks, cpu = mark
        per = {n: self.clusters[n].audit_requests(since=marks[n], user=ADMIN) for n in NAMES}
        return Requests.of(per, self.cpu() - cpu)


@dataclass
class Requests:
    """Audit-log requests of one scenario (all clusters), by verb and by verb + resource (+ error code)."""

    total: int
    by_verb: dict[str, int]
    by_resource: dict[str, int]
    server_cpu: float
    dry_run_absent: int
    """Dry-run PATCHes of objects that did not exist: the same run then created them (201)."""

    @classmethod
    def of(cls, per_cluster: Mapping[str, Sequence[Any]], server_cpu: float) -> Requests:
        verbs: Counter[str] = Counter()
        resources: Counter[str] = Counter()
        absent = 0
        for reqs in per_cluster.values():
            dry: Counter[tuple[str, str, str]] = Counter()
            created: set[tuple[str, str, str]] = set()
            for r in reqs:
                verb = r.verb + (" (dryRun)" if r.dry_run else "")
                code = f" -> {r.code}" if r.code and r.code >= 400 else ""
                verbs[verb] += 1
                resources[f"{verb} {r.resource or r.request_uri.split('?')[0]}{code}"] += 1
                key = (r.resource or "", r.namespace or "", r.name or "")
                if r.verb == "patch" and r.dry_run:
                    dry[key] += 1
                elif r.verb in ("patch", "create") and r.code == 201:
                    created.add(key)
            absent += sum(n for key, n in dry.items() if key in created)
        return cls(
            sum(verbs.values()), dict(verbs.most_common()), dict(resources.most_common()), server_cpu, absent
        )


def wipe(clusters: Clusters, apis: Mapping[str, ApiClient], *, timeout: float = 120.0) -> None:
    """Delete every Istio object (one DELETE collection per kind and namespace) and the run Lease;
    wait (bounded) until the LISTs are empty."""

    def one(name: str) -> None:
        api = apis[name]
        for plural in ISTIO_PLURALS.values():
            for ns in ("istio-system", APPS_NS, "gloo-mesh"):
                kube.request(api, "DELETE", f"{ISTIO}/namespaces/{ns}/{plural}", timeout=60)
        with contextlib.suppress(Exception):
            kube.request(
                api, "DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/mesh-reconciler"
            )
        deadline = time.monotonic() + timeout
        while True:
            left = sum(len(kube.request(api, "GET", f"{ISTIO}/{p}")["items"]) for p in ISTIO_PLURALS.values())
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {left} Istio objects still there after {timeout:.0f}s")
            time.sleep(0.2)

    with ThreadPoolExecutor(max_workers=len(NAMES)) as pool:
        for fut in [pool.submit(one, n) for n in NAMES]:
            fut.result()


# ---------------------------------------------------------------------------------- floors
def floor_patches(kubeconfig: Path, objects: Mapping[str, list[dict[str, Any]]]) -> float:
    """One server-side-apply PATCH per object (no reads), one thread per cluster; wall seconds."""

    def one(name: str) -> None:
        api = _client(kubeconfig, name)
        try:
            for obj in objects[name]:
                meta = obj["metadata"]
                path = f"{ISTIO}/namespaces/{meta['namespace']}/{ISTIO_PLURALS[obj['kind']]}/{meta['name']}"
                kube.request(
                    api,
                    "PATCH",
                    path,
                    query={"fieldManager": "bench-floor", "force": True, "fieldValidation": "Strict"},
                    body=obj,
                    content_type="application/apply-patch+yaml",
                )
        finally:
            api.close()

    return _parallel(one)


def floor_lists(kubeconfig: Path) -> tuple[float, int]:
    """The discovery LISTs, clusters in parallel (a fresh client each, like a new process): wall
    seconds, and the size of what they returned as compact JSON (measured after the clock stops)."""
    answers: list[Any] = []

    def one(name: str) -> None:
        api = _client(kubeconfig, name)
        try:
            for path, selector in DISCOVERY_LISTS:
                answers.append(
                    kube.request(api, "GET", path, query={"labelSelector": selector} if selector else None)
                )
        finally:
            api.close()

    seconds = _parallel(one)
    return seconds, sum(len(json.dumps(a, separators=(",", ":"))) for a in answers)


PROCESS_FLOOR = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from kubernetes import config
kubeconfig, lists = sys.argv[1], json.loads(sys.argv[2])
def one(name):
    api = config.new_client_from_config(config_file=kubeconfig, context=name)
    for path, selector in lists:
        q = [("labelSelector", selector)] if selector else []
        api.call_api(*api.param_serialize("GET", path, query_params=q, auth_settings=["BearerToken"])[:3]).read()
    api.close()
with ThreadPoolExecutor(len(sys.argv) - 3) as pool:
    list(pool.map(one, sys.argv[3:]))
"""
"""The smallest Python CronJob doing what a no-op pass must: start, import the kubernetes client,
load the kubeconfig and make the same LISTs. A pass is a process too, so this — not the LISTs
alone — is what "near the floor" can mean for a Python job."""


def floor_process_lists(kubeconfig: Path, timeout: float) -> Child:
    cmd = [sys.executable, "-c", PROCESS_FLOOR, str(kubeconfig), json.dumps(DISCOVERY_LISTS), *NAMES]
    return run_child(cmd, timeout=timeout)


def floor_one_patch(kubeconfig: Path, obj: Mapping[str, Any], cluster: str) -> float:
    api = _client(kubeconfig, cluster)
    try:
        meta = obj["metadata"]
        path = f"{ISTIO}/namespaces/{meta['namespace']}/{ISTIO_PLURALS[obj['kind']]}/{meta['name']}"
        start = time.perf_counter()
        kube.request(
            api,
            "PATCH",
            path,
            query={"fieldManager": "mesh-reconciler", "force": True, "fieldValidation": "Strict"},
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )
        return time.perf_counter() - start
    finally:
        api.close()


def floor_git_fetch(bare: Path, tmp: Path) -> float:
    clone = tmp / "fetch-floor"
    if not clone.exists():
        git(tmp, "clone", "-q", f"file://{bare}", str(clone))
    start = time.perf_counter()
    git(clone, "fetch", "-q", "origin")
    return time.perf_counter() - start


def _client(kubeconfig: Path, name: str) -> ApiClient:
    from kubeharness import api_client_from_kubeconfig

    return api_client_from_kubeconfig(kubeconfig, name)


def _parallel(fn: Callable[[str], None]) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(NAMES)) as pool:
        for fut in [pool.submit(fn, n) for n in NAMES]:
            fut.result()
    return time.perf_counter() - start


def drift(api: ApiClient, dr: Mapping[str, Any]) -> None:
    kube.merge_patch(
        api,
        "networking.istio.io/v1",
        "DestinationRule",
        dr["metadata"]["name"],
        {"spec": {"trafficPolicy": {"outlierDetection": {"interval": "30s"}}}},
        namespace=dr["metadata"]["namespace"],
        field_manager=DRIFT_MANAGER,
    )


# ---------------------------------------------------------------------------------- one repeat
@dataclass
class Measured:
    wall: float
    cpu: float = 0.0
    maxrss_mb: float = 0.0
    requests: int = 0
    by_verb: dict[str, int] = field(default_factory=dict)
    by_resource: dict[str, int] = field(default_factory=dict)
    server_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def measured(children: Sequence[Child], reqs: Requests, **extra: Any) -> Measured:
    return Measured(
        wall=max(c.wall for c in children),
        cpu=sum(c.cpu for c in children),
        maxrss_mb=max(c.maxrss_mb for c in children),
        requests=reqs.total,
        by_verb=reqs.by_verb,
        by_resource=reqs.by_resource,
        server_cpu=reqs.server_cpu,
        extra=extra,
    )


def summary_counts(stdout: str) -> dict[str, Any]:
    """The totals the CLI printed: the first 'totals'-like dict of ``-o json``, else the text
    output's ``total: 6500 created, 0 configured, ...`` line (counts of zero left out)."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        totals = re.findall(r"^total: (.*)$", stdout, flags=re.MULTILINE)  # the last: the CLI's own
        pairs = (part.split(" ", 1) for part in totals[-1].split(" (")[0].split(", ")) if totals else ()
        return {action: int(n) for n, action in pairs if int(n)}
    for key in ("totals", "total", "summary"):
        if isinstance(doc, dict) and isinstance(doc.get(key), dict):
            return dict(doc[key])
    return {}


def one_repeat(
    clusters: Clusters,
    servers: Servers,
    apis: Mapping[str, ApiClient],
    tmp: Path,
    work: Path,
    bare: Path,
    objects: Mapping[str, list[dict[str, Any]]],
    manifests: Mapping[str, Path],
    timeout: float,
    profile: Path | None = None,
    repeat: int = 0,
) -> dict[str, Measured]:
    kc = clusters.kubeconfig_path

    def ours(scenario: str, cmd: list[str]) -> list[str]:
        """The CLI command, under cProfile when --profile is given (one .prof per scenario)."""
        if profile is None:
            return cmd
        return [sys.executable, "-m", "cProfile", "-o", str(profile / f"{scenario}.prof"), *cmd]

    cache = tmp / "reconciler-cache"
    kcache = tmp / "kubectl-cache"
    reconcile = [
        RECONCILER, "reconcile", "--repo", f"file://{bare}", "--cache-dir", str(cache),
        "--kubeconfig", str(kc), "--lease-cluster", MGMT, "--no-commit",
    ]  # fmt: skip
    # The CronJob's own output (text, cronjob.yaml), not -o json: printing it once cost more CPU
    # than every request of a first sync (20 s at K=1000 for ~250,000 diff lines, fixed since).
    # A CronJob's pass commits status: the no-op and drift passes run like that (after one pass
    # that commits the status of the first sync); the first sync, next to kubectl, applies only.
    reconcile_commit = [a for a in reconcile if a != "--no-commit"]
    diff = [RECONCILER, "diff", str(work), "--kubeconfig", str(kc), "-o", "json"]
    total = sum(len(v) for v in objects.values())
    out: dict[str, Measured] = {}

    def kubectl(ctx: str, *args: str) -> list[str]:
        return [KUBECTL, "--kubeconfig", str(kc), "--context", ctx, "--cache-dir", str(kcache), *args]

    # --- first sync: floor, kubectl (sequential, parallel), mesh-reconciler; all on empty clusters.
    # Each later run meets a bigger etcd (every wipe and re-create adds revisions until compaction),
    # so the order rotates with the repeat: no contender is always the last, slowest one.
    apply = {
        n: kubectl(n, "apply", "--server-side", "--field-manager=bench", "-f", str(manifests[n]))
        for n in NAMES
    }

    def floor() -> None:
        mark = servers.mark()
        seconds = floor_patches(kc, objects)
        reqs = servers.since(mark)
        out["floor_patches"] = Measured(
            seconds, requests=reqs.total, by_verb=reqs.by_verb, server_cpu=reqs.server_cpu
        )
        log(f"  floor: {total} bare SSA PATCHes {seconds:.2f}s")

    def kubectl_apply(mode: str) -> None:
        mark = servers.mark()
        start = time.monotonic()
        if mode == "sequential":
            children = [run_child(apply[n], timeout=timeout) for n in NAMES]
        else:
            children = run_children([apply[n] for n in NAMES], timeout=timeout)
        wall = time.monotonic() - start
        for c in children:
            if c.rc:
                raise RuntimeError(f"{' '.join(c.cmd)} exited {c.rc}: {c.stderr[-2000:]}")
        m = measured(children, servers.since(mark))
        m.wall = wall
        out[f"kubectl_apply_{mode}"] = m
        log(f"  kubectl apply --server-side {mode}: {wall:.2f}s")

    def first_sync() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        mark = servers.mark()
        child = run_child(ours("first_sync", reconcile), timeout=timeout)
        reqs = servers.since(mark)
        out["first_sync"] = measured(
            [child], reqs, totals=summary_counts(child.stdout), dry_run_absent=reqs.dry_run_absent
        )
        log(f"  reconcile first sync: {child.wall:.2f}s, {reqs.total} requests {reqs.by_verb}")

    contenders: list[Callable[[], None]] = [
        floor,
        lambda: kubectl_apply("sequential"),
        lambda: kubectl_apply("parallel"),
        first_sync,
    ]
    # Rotated, and reversed every other repeat: a rotation alone keeps the same neighbours, and each
    # run meets a slightly slower API server than the one before it, so mesh-reconciler would always
    # follow (and be measured after) kubectl in parallel.
    turn = repeat % len(contenders)
    order = [*contenders[turn:], *contenders[:turn]]
    if repeat % 2:
        order.reverse()
    for run in order:
        wipe(clusters, apis)
        run()
    if order[-1] is not first_sync:  # the scenarios below start from the first sync's objects
        wipe(clusters, apis)
        run_child(reconcile, timeout=timeout)

    # --- no-op diff: mesh-reconciler, kubectl diff --server-side, the LISTs floor
    mark = servers.mark()
    child = run_child(ours("noop_diff", diff), timeout=timeout)
    out["noop_diff"] = measured([child], servers.since(mark), totals=summary_counts(child.stdout))
    log(f"  diff no-op: {child.wall:.2f}s, {out['noop_diff'].requests} requests")

    kdiff = {
        n: kubectl(
            n,
            "diff",
            "--server-side",
            "--field-manager=mesh-reconciler",
            "--force-conflicts",
            "-f",
            str(manifests[n]),
        )
        for n in NAMES
    }
    for mode in ("sequential", "parallel"):
        mark = servers.mark()
        start = time.monotonic()
        if mode == "sequential":
            children = [run_child(kdiff[n], timeout=timeout, ok=(0, 1)) for n in NAMES]
        else:
            children = run_children([kdiff[n] for n in NAMES], timeout=timeout)
        wall = time.monotonic() - start
        m = measured(children, servers.since(mark), exit_codes=[c.rc for c in children])
        m.wall = wall
        out[f"kubectl_diff_{mode}"] = m
        log(f"  kubectl diff --server-side {mode}: {wall:.2f}s (exit {[c.rc for c in children]})")

    mark = servers.mark()
    seconds, listed_bytes = floor_lists(kc)
    reqs = servers.since(mark)
    out["floor_lists"] = Measured(
        seconds,
        requests=reqs.total,
        by_verb=reqs.by_verb,
        server_cpu=reqs.server_cpu,
        extra={"listed_mb": listed_bytes / 1e6},
    )
    out["floor_git_fetch"] = Measured(floor_git_fetch(bare, tmp))
    mark = servers.mark()
    child = floor_process_lists(kc, timeout)
    reqs = servers.since(mark)
    out["floor_process_lists"] = measured([child], reqs)
    log(f"  floor: a python process making the {reqs.total} LISTs {child.wall:.2f}s, {child.cpu:.2f}s CPU")
    log(f"  floor: {reqs.total} LISTs {seconds:.2f}s, git fetch {out['floor_git_fetch'].wall:.2f}s")

    # --- no-op reconcile (status committed by the pass before it, as in a running CronJob)
    child = run_child(reconcile_commit, timeout=timeout)
    log(f"  reconcile committing the status: {child.wall:.2f}s")
    mark = servers.mark()
    child = run_child(ours("noop_reconcile", reconcile_commit), timeout=timeout)
    out["noop_reconcile"] = measured([child], servers.since(mark), totals=summary_counts(child.stdout))
    log(f"  reconcile no-op: {child.wall:.2f}s, {out['noop_reconcile'].requests} requests")

    # --- one drifted DestinationRule (another field manager), then reconcile; floor: one PATCH
    dr = next(o for o in objects[MGMT] if o["kind"] == "DestinationRule")
    drift(apis[MGMT], dr)
    mark = servers.mark()
    child = run_child(ours("drift_reconcile", reconcile_commit), timeout=timeout)
    out["drift_reconcile"] = measured([child], servers.since(mark), totals=summary_counts(child.stdout))
    log(f"  reconcile one drifted object: {child.wall:.2f}s, {out['drift_reconcile'].requests} requests")
    drift(apis[MGMT], dr)
    out["floor_one_patch"] = Measured(floor_one_patch(kc, dr, MGMT))
    return out


# ---------------------------------------------------------------------------------- report
def check(run: Mapping[str, Measured], objects: int) -> list[str]:
    """Did each scenario do what it is named after (the CLI's own summary)? Problems, if any."""
    want = {
        "first_sync": {"created": objects},
        "noop_diff": {"unchanged": objects},
        "noop_reconcile": {"unchanged": objects},
        "drift_reconcile": {"configured": 1, "unchanged": objects - 1},
    }
    problems = []
    for key, counts in want.items():
        got = run[key].extra.get("totals", {})
        if {k: v for k, v in got.items() if v} != counts:
            problems.append(f"{key}: expected {counts}, the CLI reported {got}")
    return problems


def median_measured(runs: Sequence[Measured]) -> Measured:
    last = runs[-1]
    return Measured(
        wall=statistics.median(r.wall for r in runs),
        cpu=statistics.median(r.cpu for r in runs),
        maxrss_mb=statistics.median(r.maxrss_mb for r in runs),
        requests=round(statistics.median(r.requests for r in runs)),
        by_verb=last.by_verb,
        by_resource=last.by_resource,
        server_cpu=statistics.median(r.server_cpu for r in runs),
        extra=last.extra,
    )


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def ours(m: Measured, objects: int) -> str:
    return (
        f"{fmt_s(m.wall)}, {fmt_s(m.cpu)} CPU ({m.cpu / objects * 1000:.1f} ms/object), "
        f"{m.maxrss_mb:.0f} MB peak RSS, {m.requests:,} requests"
    )


OURS = ("first_sync", "noop_diff", "noop_reconcile", "drift_reconcile")


def floors(med: Mapping[str, Measured], *, process: bool = False) -> dict[str, float]:
    """Wall seconds of the floor of each mesh-reconciler scenario (``process``: the LISTs made by a
    fresh Python process with the kubernetes client, start-up and import included)."""
    fl = med["floor_process_lists"].wall if process else med["floor_lists"].wall
    fg, fp = med["floor_git_fetch"].wall, med["floor_one_patch"].wall
    return {
        "first_sync": med["floor_patches"].wall,
        "noop_diff": fl,
        "noop_reconcile": fl + fg,
        "drift_reconcile": fl + fg + fp,
    }


def ratios(
    med: Mapping[str, Measured], startup: Mapping[str, float], objects: int
) -> dict[str, dict[str, float]]:
    """mesh-reconciler / floor, and / (floor + the CLI's start-up, ``reconciler --help``)."""
    return {
        key: {
            "floor_seconds": floor,
            "x_floor": med[key].wall / floor,
            "x_floor_plus_startup": med[key].wall / (floor + startup["help_wall"]),
            "process_floor_seconds": floors(med, process=True)[key],
            "x_process_floor": med[key].wall / floors(med, process=True)[key],
            "cpu_ms_per_object": med[key].cpu / objects * 1000,
        }
        for key, floor in floors(med).items()
    }


def table(k: int, objects: int, med: Mapping[str, Measured], startup: Mapping[str, float]) -> str:
    r = ratios(med, startup, objects)
    up = startup["help_wall"]

    def floor(key: str, what: str) -> str:
        x = r[key]
        text = f"{what} {fmt_s(x['floor_seconds'])}: **{x['x_floor']:.1f}x floor** "
        if key == "first_sync":
            return text + f"({x['x_floor_plus_startup']:.1f}x floor + {fmt_s(up)} start-up)"
        return text + (
            f"; as a python process (start, import the client, LISTs) {fmt_s(x['process_floor_seconds'])}: "
            f"**{x['x_process_floor']:.1f}x**"
        )

    first, ndiff, nrec, drift_ = (med[key] for key in OURS)
    ka_s, ka_p = med["kubectl_apply_sequential"], med["kubectl_apply_parallel"]
    kd_s, kd_p = med["kubectl_diff_sequential"], med["kubectl_diff_parallel"]
    lists = med["floor_lists"].requests
    differs = any(kd_s.extra.get("exit_codes", [])) or any(kd_p.extra.get("exit_codes", []))
    rows = [
        "| K (objects) | scenario | mesh-reconciler | kubectl (same objects) | floor |",
        "|---|---|---|---|---|",
        f"| {k} ({objects:,}) | first sync | {ours(first, objects)}, "
        f"{first.extra.get('dry_run_absent', 0):,} dry runs of absent objects "
        f"| `apply --server-side` per context {fmt_s(ka_s.wall)} sequential, {fmt_s(ka_p.wall)} parallel "
        f"({fmt_s(ka_p.cpu)} CPU, {ka_p.requests:,} requests) "
        f"| {floor('first_sync', 'bare SSA PATCHes')} |",
        f"| {k} | no-op `diff` | {ours(ndiff, objects)} "
        f"| `kubectl diff --server-side` {fmt_s(kd_s.wall)} sequential, {fmt_s(kd_p.wall)} parallel "
        f"({fmt_s(kd_p.cpu)} CPU, {kd_p.requests:,} requests{'; it reported differences!' if differs else ''}) "
        f"| {floor('noop_diff', f'the {lists} LISTs')} |",
        f"| {k} | no-op `reconcile` | {ours(nrec, objects)} | — | {floor('noop_reconcile', 'LISTs + git fetch')} |",
        f"| {k} | one drifted object | {ours(drift_, objects)} | — "
        f"| {floor('drift_reconcile', 'LISTs + git fetch + one PATCH')} |",
    ]
    return "\n".join(rows)


def notes(med: Mapping[str, Measured], startup: Mapping[str, float]) -> str:
    lines = [
        f"- start-up: `reconciler --help` {fmt_s(startup['help_wall'])} wall, {fmt_s(startup['help_cpu'])} CPU; "
        f"`import reconciler.commands.app` {fmt_s(startup['import_wall'])}",
    ]
    for key, label in (
        ("first_sync", "first sync"),
        ("noop_diff", "no-op diff"),
        ("noop_reconcile", "no-op reconcile"),
        ("drift_reconcile", "one drifted object"),
        ("kubectl_apply_parallel", "kubectl apply (parallel)"),
        ("kubectl_diff_parallel", "kubectl diff (parallel)"),
        ("floor_patches", "floor: bare PATCHes"),
        ("floor_lists", "floor: LISTs"),
    ):
        m = med[key]
        verbs = ", ".join(f"{n} {v}" for v, n in m.by_verb.items()) or "-"
        line = f"- {label}: {m.requests:,} requests ({verbs}); API servers + etcd {fmt_s(m.server_cpu)} CPU"
        if key in OURS:
            line += f"; {m.cpu / m.wall:.0%} of the wall time on our CPU"
            other = [f"{n} {what}" for what, n in m.by_resource.items() if not what.startswith("list ")]
            if len(other) <= 6:
                line += "; besides the LISTs: " + (", ".join(other) or "nothing")
        lines.append(line)
    listed = float(med["floor_lists"].extra.get("listed_mb") or 0.0)
    if listed:
        rss = med["noop_reconcile"].maxrss_mb
        base = startup.get("libraries_maxrss_mb", startup.get("help_maxrss_mb", 0.0))
        lines.append(
            f"- memory: the LISTs return {listed:.1f} MB of JSON; no-op reconcile peak RSS {rss:.0f} MB = "
            f"{rss / listed:.1f}x that; above the {base:.0f} MB of the interpreter and the libraries a pass "
            f"imports (`reconciler --help`: {startup.get('help_maxrss_mb', 0.0):.0f} MB): "
            f"{rss - base:.0f} MB = {(rss - base) / listed:.1f}x"
        )
    return "\n".join(lines)


def print_profiles(directory: Path, top: int = 15) -> None:
    """The functions that take the most time (own time, then cumulative) of each profiled scenario."""
    import pstats

    for prof in sorted(directory.glob("*.prof")):
        for order in ("tottime", "cumulative"):
            print(f"\n### {prof.stem}: top {top} by {order}\n")
            stats = pstats.Stats(str(prof), stream=sys.stdout)
            stats.strip_dirs().sort_stats(order).print_stats(top)


def measure_startup() -> dict[str, float]:
    run_child([RECONCILER, "--help"], timeout=60)  # warm-up (byte-code caches)
    helps = [run_child([RECONCILER, "--help"], timeout=60) for _ in range(3)]
    imports = [
        run_child([sys.executable, "-c", "import reconciler.commands.app"], timeout=60) for _ in range(3)
    ]
    # The memory baseline: the interpreter and every library a pass imports. `--help` no longer is
    # one: it does not import the kubernetes client or GitPython (~10 MB), which a pass always does.
    libraries = [run_child([sys.executable, "-c", PASS_LIBRARIES], timeout=60) for _ in range(3)]
    best = min(helps, key=lambda c: c.wall)
    return {
        "help_wall": statistics.median(c.wall for c in helps),
        "help_cpu": best.cpu,
        "help_maxrss_mb": best.maxrss_mb,
        "libraries_maxrss_mb": min(c.maxrss_mb for c in libraries),
        "import_wall": statistics.median(c.wall for c in imports),
    }


PASS_LIBRARIES = (
    "import reconciler.commands.app, reconciler.source, reconciler.clusters.targets as t; t.preload_client()"
)


def split_rendered(text: str) -> dict[str, list[dict[str, Any]]]:
    """``reconciler render -o yaml``: one YAML stream per cluster, each after a
    ``# ---- cluster: NAME (N objects)`` line; returns the objects per cluster."""
    per: dict[str, list[dict[str, Any]]] = {n: [] for n in NAMES}
    parts = re.split(r"^# ---- cluster: (\S+).*$", text, flags=re.MULTILINE)
    for cluster, chunk in zip(parts[1::2], parts[2::2], strict=True):
        per.setdefault(cluster, []).extend(
            d for d in yaml.load_all(chunk, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d
        )
    return per


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--k", type=int, default=100, help="services / VirtualDestinations (default 100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every scenario; medians are printed")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--timeout", type=float, help="seconds per command (default 120 + K/2)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the CLI under cProfile, one <scenario>.prof per scenario here, and print the top "
        "of each (times are then inflated: compare profiles, not the table)",
    )
    args = parser.parse_args()
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    for tool in (RECONCILER, KUBECTL):
        if not Path(tool).exists():
            parser.error(
                f"{tool} is missing: run `.venv/bin/pip install -e '.[dev,bench]'` (or `make bench`)"
            )
    timeout = args.timeout or 120 + args.k / 2
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bench-clusters-"))
    clusters: Clusters | None = None
    try:
        startup = measure_startup()
        log(f"start-up: reconciler --help {startup['help_wall']:.2f}s")
        work, bare = make_repo(tmp, args.k)
        log(f"starting {len(NAMES)} clusters")
        try:
            clusters = start_clusters(
                NAMES, tmp / "clusters", service_cluster_ip_range="10.96.0.0/16"
            )  # K services fit
        except MissingBinariesError:
            print(missing_binaries_message(), file=sys.stderr)
            return 2
        t = time.monotonic()
        seed(clusters, args.k)
        log(f"seeded {args.k} services per cluster in {time.monotonic() - t:.1f}s")
        kc = clusters.kubeconfig_path
        apis = {n: clusters.api_client(n) for n in NAMES}
        servers = Servers(clusters)
        if len(servers.procs) != 2 * len(NAMES):
            log(f"warning: found {len(servers.procs)} kube-apiserver/etcd processes, not {2 * len(NAMES)}")

        render = run_child(
            [RECONCILER, "render", str(work), "--kubeconfig", str(kc), "-o", "yaml"], timeout=timeout
        )
        objects = split_rendered(render.stdout)
        total = sum(len(v) for v in objects.values())
        if not total:
            raise RuntimeError(f"render printed no objects:\n{render.stdout[:2000]}")
        manifests = {}
        for n in NAMES:
            manifests[n] = tmp / f"{n}.yaml"
            manifests[n].write_text(yaml.safe_dump_all(objects[n], sort_keys=False))
        log(f"rendered {total} objects ({', '.join(f'{n} {len(objects[n])}' for n in NAMES)})")
        for n in NAMES:  # kubectl's discovery cache, warmed once (a user's usual state)
            run_child(
                [
                    KUBECTL,
                    "--kubeconfig",
                    str(kc),
                    "--context",
                    n,
                    "--cache-dir",
                    str(tmp / "kubectl-cache"),
                    "api-resources",
                ],
                timeout=60,
            )

        runs: list[dict[str, Measured]] = []
        problems: list[str] = []
        for r in range(args.repeat):
            log(f"repeat {r + 1}/{args.repeat}")
            runs.append(
                one_repeat(
                    clusters, servers, apis, tmp, work, bare, objects, manifests, timeout, args.profile, r
                )
            )
            for problem in check(runs[-1], total):
                problems.append(f"repeat {r + 1}: {problem}")
                log(f"WARNING {problem}")
        med = {key: median_measured([run[key] for run in runs]) for key in runs[0]}
        print(table(args.k, total, med, startup))
        print()
        print(notes(med, startup))
        for problem in problems:
            print(f"- WARNING: {problem}")
        if args.profile:
            print_profiles(args.profile)
        elapsed = time.monotonic() - began
        print(
            f"\n(3 clusters, K={args.k}, {total} objects, median of {args.repeat}; benchmark took {elapsed:.0f} s)"
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "k": args.k,
                        "clusters": NAMES,
                        "objects": total,
                        "objects_per_cluster": {n: len(objects[n]) for n in NAMES},
                        "repeat": args.repeat,
                        "startup": startup,
                        "ratios": ratios(med, startup, total),
                        "problems": problems,
                        "median": {key: asdict(m) for key, m in med.items()},
                        "runs": [{key: asdict(m) for key, m in run.items()} for run in runs],
                        "seconds_total": elapsed,
                        "environment": {
                            "python": platform.python_version(),
                            "cpus": os.cpu_count(),
                            "kubectl": run_child(
                                [KUBECTL, "version", "--client", "-o", "json"], timeout=30
                            ).stdout,
                        },
                    },
                    indent=2,
                )
            )
        return 1 if problems else 0
    finally:
        if clusters is not None:
            clusters.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
