"""Three shard processes vs one process, on six real API servers and a real git server.

A fleet of six clusters (one region each) and a policy repository served over HTTP by
``git http-backend``. ``reconciler reconcile --shard i/3`` runs as three concurrent processes, each
authenticated to the API servers as its own user (``shard-i``), so the audit logs say which shard
sent every request; the git server holds their first status pushes until all three have arrived, so
they race for the branch for real. Then the same fleet is wiped and reconciled by one process from a
copy of the same repository. Proven:

* every cluster is written by exactly one shard — its rendezvous owner — and every object once;
  each shard LISTs every cluster (translation needs them all) and takes only its own Lease;
* the live objects are identical to the single-process run's;
* the status files (every per-policy report and the README) are byte-identical to the
  single-process run's, although the shards pushed concurrently and lost races (no result lost);
* a policy change (a prune and a configure in clusters of different shards) converges the same way.

The measured cost per shard (requests, CPU seconds) is printed (``pytest -s``) for docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters, kube, start_clusters
from kubeharness.seed import bookinfo_topology, seed_cluster

from reconciler.clusters.kube import ISTIO_RESOURCES, LEASES
from reconciler.shard import owner
from tests.conftest import require_k8s_binaries
from tests.gitserver import TOKEN, GitHttpServer, run_git

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("us-east-1", "us-east-2", "eu-west-1", "us-west-2", "ap-south-1", "eu-central-1")
NAMES = tuple(f"{r}-m" for r in REGIONS)
"""Six clusters; with 3 shards rendezvous hashing gives each shard two of them (asserted below)."""
MGMT = NAMES[0]
SHARDS = 3
LEASE_NAMESPACE = "mesh-reconciler"
PROCESS_TIMEOUT = 300.0
ISTIO_GROUP = "networking.istio.io"


# --------------------------------------------------------------------------------------------------
# the fleet and the policies


@pytest.fixture(scope="module")
def fleet() -> Iterator[Clusters]:
    binaries = require_k8s_binaries()
    started = start_clusters(list(NAMES), binaries=binaries)
    try:

        def seed(index: int, name: str) -> None:
            topology = bookinfo_topology(
                name,
                region=REGIONS[index],
                zone=f"{REGIONS[index]}a",
                reviews_versions=["v1"],
                pod_ips={"reviews-v1": f"10.{40 + index}.1.11"},
                gateway_address=f"172.18.1.{10 + index}",
            )
            api = started.api_client(name)
            result = seed_cluster(api, topology)
            assert not result.skipped, result.skipped
            kube.apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}})

        with ThreadPoolExecutor(max_workers=len(NAMES)) as pool:
            for future in [pool.submit(seed, i, n) for i, n in enumerate(NAMES)]:
                future.result()
        yield started
    finally:
        started.stop()


def policy_files() -> dict[str, str]:
    meshes = "".join(f"    - {{name: istiod-istio-system-{n}, namespace: gloo-mesh}}\n" for n in NAMES)
    contexts = "".join(f"  {n}: {n}\n" for n in NAMES)
    shifted = [NAMES[0], NAMES[2], NAMES[4]]  # clusters of different shards (asserted below)
    services = "".join(
        f"          - {{clusterName: {c}, name: reviews, namespace: bookinfo}}\n" for c in shifted
    )
    return {
        "reconciler.yaml": f"clusters:\n{contexts}managementCluster: {MGMT}\nstatus:\n  path: status\n"
        "prune:\n  enabled: true\n  maxPruneRatio: 0.5\n",
        "virtual-mesh.yaml": "apiVersion: networking.mesh.gloo.solo.io/v1\nkind: VirtualMesh\n"
        f"metadata: {{name: virtual-mesh, namespace: gloo-mesh}}\nspec:\n  meshes:\n{meshes}",
        "reviews-global.yaml": """apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {name: reviews-global, namespace: gloo-mesh}
spec:
  hostname: reviews.global
  port: {number: 9080, protocol: http}
  virtualMesh: {name: virtual-mesh, namespace: gloo-mesh}
  localized:
    outlierDetection: {consecutiveErrors: 1, interval: 5s, baseEjectionTime: 120s, maxEjectionPercent: 100}
    destinationSelectors: [{kubeServiceMatcher: {labels: {app: reviews}}}]
    failoverDirectives:
      - from: {region: us-east-1}
        to: [{region: us-east-2}, {region: eu-west-1}]
""",
        "reviews-shift.yaml": f"""apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {{name: reviews-shift, namespace: bookinfo}}
spec:
  destinationSelector:
    - kubeServiceRefs:
        services:
{services}  policy:
    trafficShift: {{destinations: [{{virtualDestination: {{name: reviews-global, namespace: gloo-mesh}}}}]}}
""",
    }


def wipe(fleet: Clusters) -> None:
    """Every Istio object and every Lease of the reconciler, in every cluster."""
    for name in NAMES:
        api = fleet.api_client(name)
        for resource in ISTIO_RESOURCES.values():
            for obj in kube.list_items(api, resource.api_version, resource.kind):
                meta = obj["metadata"]
                kube.delete(
                    api, resource.api_version, resource.kind, meta["name"], namespace=meta["namespace"]
                )
        for lease in kube.list_items(api, LEASES.api_version, "Lease", namespace=LEASE_NAMESPACE):
            kube.delete(
                api, LEASES.api_version, "Lease", lease["metadata"]["name"], namespace=LEASE_NAMESPACE
            )


def live_objects(fleet: Clusters) -> dict[str, list[dict[str, Any]]]:
    """Our objects per cluster, normalized: identity, labels, annotations and spec (no server fields)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in NAMES:
        api = fleet.api_client(name)
        objects = []
        for resource in ISTIO_RESOURCES.values():
            for obj in kube.list_items(api, resource.api_version, resource.kind):
                meta = obj["metadata"]
                objects.append(
                    {
                        "kind": obj["kind"],
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "labels": meta.get("labels") or {},
                        "annotations": meta.get("annotations") or {},
                        "spec": obj.get("spec"),
                    }
                )
        out[name] = sorted(objects, key=lambda o: (o["kind"], o["namespace"], o["name"]))
    return out


# --------------------------------------------------------------------------------------------------
# processes


@dataclass
class Run:
    user: str
    rc: int
    cpu: float
    stdout: str
    stderr: str

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.stdout)
        return data


def run_concurrently(
    commands: Mapping[str, Sequence[str]], env: Mapping[str, str], tmp: Path
) -> dict[str, Run]:
    """Start every command at once; reap each with wait4 (its own CPU time, git children included).
    Bounded: past PROCESS_TIMEOUT the process groups are killed."""
    procs: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    for user, cmd in commands.items():
        out, err = tmp / f"{user}.out", tmp / f"{user}.err"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            procs[user] = (
                subprocess.Popen(cmd, stdout=fo, stderr=fe, env=dict(env), start_new_session=True),
                out,
                err,
            )
    reaped: dict[str, tuple[int, float]] = {}

    def reap(user: str, proc: subprocess.Popen[bytes]) -> None:
        _, status, usage = os.wait4(proc.pid, 0)
        reaped[user] = (os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)
        proc.returncode = reaped[user][0]

    threads = [threading.Thread(target=reap, args=(u, p), daemon=True) for u, (p, _, _) in procs.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + PROCESS_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        for proc, _, _ in procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(10)
        pytest.fail(f"reconcile processes did not finish within {PROCESS_TIMEOUT:.0f}s")
    return {
        user: Run(user, reaped[user][0], reaped[user][1], out.read_text(), err.read_text())
        for user, (_, out, err) in procs.items()
    }


def reconcile_command(url: str, cache: Path, kubeconfig: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciler",
        "reconcile",
        "--repo",
        url,
        "--cache-dir",
        str(cache),
        "--kubeconfig",
        str(kubeconfig),
        "--log-format",
        "json",
        "-o",
        "json",
        *extra,
    ]


def process_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "JOB_COMPLETION_", "GIT_"))
    }
    env.update({"RECONCILER_GIT_TOKEN": TOKEN, "HOME": str(tmp), "COLUMNS": "200"})
    return env


def hold_first_pushes(bare: Path, barrier: Path, count: int) -> None:
    """A pre-receive hook: the first ``count`` pushes wait (bounded, under the server's CGI timeout)
    until all of them have arrived, so they race for the same branch head at the same moment."""
    barrier.mkdir()
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        f'touch "{barrier}/$$"\n'
        f'i=0; while [ "$(ls "{barrier}" | wc -l)" -lt {count} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done\n'
        "exit 0\n"
    )
    hook.chmod(0o755)


def status_tree(url: str, dest: Path) -> dict[str, bytes]:
    run_git("-c", f"http.extraHeader=Authorization: Basic {_basic()}", "clone", "-q", url, str(dest))
    root = dest / "status"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _basic() -> str:
    import base64

    return base64.b64encode(f"x:{TOKEN}".encode()).decode()


def reports(tree: Mapping[str, bytes]) -> dict[str, bytes]:
    """The status files a person reads (the shards' per-cluster records left out)."""
    return {path: data for path, data in tree.items() if not path.startswith(".clusters/")}


def istio_writes(fleet: Clusters, marks: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {
        name: [
            r
            for r in fleet[name].audit_requests(since=marks[name])
            if r.is_write and r.api_group == ISTIO_GROUP
        ]
        for name in NAMES
    }


# --------------------------------------------------------------------------------------------------
# the test


def run_shards(url: str, users: Mapping[str, Path], env: dict[str, str], tmp: Path) -> dict[str, Run]:
    """Every shard at once (shard i as user i, each with its own cache); each must exit 0."""
    runs = run_concurrently(
        {
            user: reconcile_command(url, tmp / f"cache-{user}", kubeconfig, "--shard", f"{i}/{SHARDS}")
            for i, (user, kubeconfig) in enumerate(users.items())
        },
        env,
        tmp,
    )
    for run in runs.values():
        assert run.rc == 0, (run.user, run.stderr[-3000:])
    return runs


def test_three_shards_equal_one_process(fleet: Clusters, tmp_path: Path) -> None:
    owners = {c: owner(c, SHARDS) for c in NAMES}
    assert sorted(Counter(owners.values()).values()) == [2, 2, 2], owners
    assert len({owners[NAMES[i]] for i in (0, 2, 4)}) == 3, "the TrafficPolicy must span all shards"
    users = {
        f"shard-{i}": fleet.kubeconfig_for_user(list(NAMES), f"shard-{i}", ["system:masters"])
        for i in range(SHARDS)
    }
    single_kubeconfig = fleet.kubeconfig_for_user(list(NAMES), "single", ["system:masters"])
    env = process_env(tmp_path)

    with GitHttpServer(tmp_path / "git-server") as server:
        sharded_bare = server.create_repo("sharded", policy_files())
        shutil.copytree(sharded_bare, server.repo_path("single"))  # the very same commit
        hold_first_pushes(sharded_bare, tmp_path / "barrier", SHARDS)

        # ---- 1. three shards at once ---------------------------------------------------------------
        wipe(fleet)
        marks = {n: fleet[n].audit_mark() for n in NAMES}
        runs = run_shards(server.url("sharded"), users, env, tmp_path)
        sharded_live = live_objects(fleet)
        sharded_status = status_tree(server.url("sharded"), tmp_path / "clone-sharded")
        writes = istio_writes(fleet, marks)
        requests = {n: fleet[n].audit_requests(since=marks[n]) for n in NAMES}

        # Each cluster was written by its owner alone, each object once; each shard wrote its clusters.
        for cluster in NAMES:
            assert writes[cluster], cluster
            assert {w.user for w in writes[cluster]} == {f"shard-{owners[cluster]}"}, cluster
            objects = Counter((w.resource, w.namespace, w.name) for w in writes[cluster])
            assert set(objects.values()) == {1}, (cluster, objects)
            assert len(objects) == len(sharded_live[cluster])
            # ... and read by every shard (translation needs the whole fleet)
            readers = {r.user for r in requests[cluster] if r.verb == "list" and r.resource == "services"}
            assert readers == set(users), cluster
        for i, (user, run) in enumerate(runs.items()):
            payload = run.payload()
            assert sorted(c["cluster"] for c in payload["clusters"]) == sorted(
                c for c in NAMES if owners[c] == i
            )
            assert payload["statusCommit"], user
            assert payload["shard"] == f"{i}/{SHARDS}"
        # One Lease per shard, in the management cluster, written by that shard only.
        lease_writes = {
            (r.user, r.name)
            for r in requests[MGMT]
            if r.is_write and r.resource == "leases" and r.namespace == LEASE_NAMESPACE
        }
        assert lease_writes == {
            (f"shard-{i}", f"mesh-reconciler-shard-{i}-of-{SHARDS}") for i in range(SHARDS)
        }
        # They raced: all three pushed on the same head; the losers rebuilt on the winners' commits.
        rejected = sum(run.stderr.count("status push to main rejected") for run in runs.values())
        assert rejected >= SHARDS - 1, [r.stderr[-2000:] for r in runs.values()]
        subjects = run_git("log", "--format=%an|%s", cwd=sharded_bare).splitlines()
        assert len([s for s in subjects if s.startswith("mesh-reconciler|status: reconcile")]) == SHARDS
        assert sorted(p for p in sharded_status if p.startswith(".clusters/")) == sorted(
            f".clusters/{n}.yaml" for n in NAMES
        )
        cost = {
            user: (sum(1 for n in NAMES for r in requests[n] if r.user == user), runs[user].cpu)
            for user in users
        }
        verbs = {
            user: dict(
                Counter(f"{r.verb} {r.resource}" for n in NAMES for r in requests[n] if r.user == user)
            )
            for user in users
        }

        # ---- 2. one process, same fleet (wiped), same commit ------------------------------------------
        wipe(fleet)
        marks = {n: fleet[n].audit_mark() for n in NAMES}
        single = run_concurrently(
            {"single": reconcile_command(server.url("single"), tmp_path / "cache-single", single_kubeconfig)},
            env,
            tmp_path,
        )["single"]
        assert single.rc == 0, single.stderr[-3000:]
        single_requests = sum(len(fleet[n].audit_requests(since=marks[n], user="single")) for n in NAMES)
        single_writes = istio_writes(fleet, marks)
        assert live_objects(fleet) == sharded_live
        single_status = status_tree(server.url("single"), tmp_path / "clone-single")
        assert not any(p.startswith(".clusters/") for p in single_status)
        assert single_status == reports(sharded_status)  # byte for byte: reports and README
        assert {n: len(w) for n, w in single_writes.items()} == {n: len(w) for n, w in writes.items()}
        states = {
            yaml.safe_load(d)["status"]["state"] for p, d in single_status.items() if p.endswith(".yaml")
        }
        assert states == {"ACCEPTED"}

        print(
            "\n[shards] first sync of 6 clusters, "
            f"{sum(len(v) for v in sharded_live.values())} objects: "
            + "; ".join(f"{u}: {n} requests, {cpu:.2f} s CPU" for u, (n, cpu) in cost.items())
            + f"; single process: {single_requests} requests, {single.cpu:.2f} s CPU"
            + f"; {rejected} status pushes rejected and rebuilt\n[shards] requests by verb: {verbs}"
        )

        # ---- 3. a policy change (configure + prune in every shard's clusters), both ways -------------
        for name in ("sharded", "single"):
            work = tmp_path / f"work-{name}"
            run_git(
                "-c",
                f"http.extraHeader=Authorization: Basic {_basic()}",
                "clone",
                "-q",
                server.url(name),
                str(work),
            )
            (work / "reviews-shift.yaml").unlink()
            vd = work / "reviews-global.yaml"
            vd.write_text(vd.read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 60s"))
            run_git("add", "-A", cwd=work)
            run_git("commit", "-q", "-m", "drop the shift, shorter ejection", cwd=work)
            run_git(
                "-c",
                f"http.extraHeader=Authorization: Basic {_basic()}",
                "push",
                "-q",
                "origin",
                "HEAD:main",
                cwd=work,
            )

        marks = {n: fleet[n].audit_mark() for n in NAMES}
        wipe_free = live_objects(fleet)  # the single-process run's objects: now reconciled by shards
        run_shards(server.url("sharded"), users, env, tmp_path)
        writes = istio_writes(fleet, marks)
        for cluster in NAMES:
            assert {w.user for w in writes[cluster]} == {f"shard-{owners[cluster]}"}, cluster
        pruned = {(c, w.name) for c in NAMES for w in writes[c] if w.verb == "delete"}
        assert pruned == {(NAMES[i], "reviews") for i in (0, 2, 4)}
        sharded_live = live_objects(fleet)
        assert sharded_live != wipe_free
        sharded_status = status_tree(server.url("sharded"), tmp_path / "clone-sharded-2")

        single = run_concurrently(
            {"single": reconcile_command(server.url("single"), tmp_path / "cache-single", single_kubeconfig)},
            env,
            tmp_path,
        )["single"]
        assert single.rc == 0, single.stderr[-3000:]
        assert live_objects(fleet) == sharded_live  # the single run found nothing left to change
        assert all(
            c["summary"] == {"unchanged": len(sharded_live[c["cluster"]])}
            for c in single.payload()["clusters"]
        )
        single_status = status_tree(server.url("single"), tmp_path / "clone-single-2")
        # The two repositories' policy commits differ (different status histories): compare without them.
        policy = {
            n: run_git("log", "-1", "--format=%H", "--grep=drop the shift", "main", cwd=server.repo_path(n))
            for n in ("sharded", "single")
        }
        assert all(policy.values()) and policy["sharded"] != policy["single"]

        def neutral(tree: Mapping[str, bytes], commit: str) -> dict[str, bytes]:
            return {
                p: d.replace(commit.encode(), b"<commit>").replace(commit[:7].encode(), b"<c>")
                for p, d in tree.items()
            }

        assert neutral(single_status, policy["single"]) == neutral(reports(sharded_status), policy["sharded"])
        vd = yaml.safe_load(single_status["VirtualDestination/gloo-mesh/reviews-global.yaml"])["status"]
        assert vd["observedGeneration"] == 2 and vd["state"] == "ACCEPTED"
        assert "TrafficPolicy/bookinfo/reviews-shift.yaml" not in single_status
