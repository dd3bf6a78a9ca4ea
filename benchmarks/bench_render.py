"""Benchmark: translation (render) time and peak memory for many VirtualDestinations.

Generates N VirtualDestinations (each selecting its own service by label, present in every cluster)
over C clusters, plus one TrafficPolicy per VirtualDestination, and times ``translate``. The
baseline measured in the same run is the smallest size (1,000 by default): the ratio says how
translation scales (linear would be 10x for 10x the policies).

    .venv/bin/python benchmarks/bench_render.py [--sizes 1000 10000] [--clusters 10]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from reconciler.clusters.inventory import Inventory, build_cluster_state
from reconciler.policy import load_and_check
from reconciler.translate import translate

REGIONS = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-south-1",
    "ap-northeast-1",
    "sa-east-1",
    "ca-central-1",
]


def policies(root: Path, n: int, clusters: int) -> None:
    meshes = "".join(
        f"    - {{name: istiod-istio-system-c{i}, namespace: gloo-mesh}}\n" for i in range(clusters)
    )
    (root / "mesh.yaml").write_text(
        "apiVersion: networking.mesh.gloo.solo.io/v1\nkind: VirtualMesh\n"
        f"metadata: {{name: vm, namespace: gloo-mesh}}\nspec:\n  meshes:\n{meshes}"
    )
    chunk = []
    for i in range(n):
        chunk.append(f"""---
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: svc-{i}, namespace: gloo-mesh}}
spec:
  hostname: svc-{i}.global
  port: {{number: 8080}}
  virtualMesh: {{name: vm, namespace: gloo-mesh}}
  localized:
    outlierDetection: {{consecutiveErrors: 2}}
    destinationSelectors: [{{kubeServiceMatcher: {{labels: {{app: svc-{i}}}}}}}]
    failoverDirectives:
      - from: {{region: us-east-1}}
        to: [{{region: us-west-2}}, {{region: eu-west-1}}]
---
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {{name: shift-{i}, namespace: apps}}
spec:
  destinationSelector: [{{kubeServiceRefs: {{services: [{{name: svc-{i}, namespace: apps, clusterName: c0}}]}}}}]
  policy: {{trafficShift: {{destinations: [{{virtualDestination: {{name: svc-{i}, namespace: gloo-mesh}}}}]}}}}
""")
        if len(chunk) == 500:
            (root / f"p{i}.yaml").write_text("".join(chunk))
            chunk = []
    if chunk:
        (root / "last.yaml").write_text("".join(chunk))


def inventory(n: int, clusters: int) -> Inventory:
    inv = Inventory()
    for c in range(clusters):
        region = REGIONS[c % len(REGIONS)]
        objs: list[dict[str, Any]] = [
            {
                "kind": "Node",
                "metadata": {
                    "name": "n",
                    "labels": {
                        "topology.kubernetes.io/region": region,
                        "topology.kubernetes.io/zone": region + "a",
                    },
                },
            },
            {
                "kind": "Deployment",
                "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}},
            },
            {
                "kind": "Service",
                "metadata": {
                    "name": "gw",
                    "namespace": "istio-system",
                    "labels": {"istio": "eastwestgateway"},
                },
                "spec": {"ports": [{"name": "tls", "port": 15443}]},
                "status": {"loadBalancer": {"ingress": [{"ip": f"192.0.2.{c + 1}"}]}},
            },
        ]
        for i in range(n):
            objs.append(
                {
                    "kind": "Service",
                    "metadata": {"name": f"svc-{i}", "namespace": "apps", "labels": {"app": f"svc-{i}"}},
                    "spec": {"ports": [{"name": "http", "port": 8080}]},
                }
            )
            objs.append(
                {
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": f"svc-{i}-x",
                        "namespace": "apps",
                        "labels": {"kubernetes.io/service-name": f"svc-{i}"},
                    },
                    "ports": [{"name": "http", "port": 8080}],
                    "endpoints": [
                        {
                            "addresses": [f"10.{c}.{i // 250}.{i % 250 + 1}"],
                            "nodeName": "n",
                            "conditions": {"ready": True},
                        }
                    ],
                }
            )
        inv.clusters[f"c{c}"] = build_cluster_state(f"c{c}", objs)
    return inv


def measure(n: int, clusters: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policies(root, n, clusters)
        ps = load_and_check(root)
        assert not ps.errors, ps.errors[:3]
        inv = inventory(n, clusters)
        gc.collect()
        start = time.perf_counter()
        result = translate(ps, inv)
        seconds = time.perf_counter() - start
        objects = sum(len(v) for v in result.objects.values())
        del result
        gc.collect()
        tracemalloc.start()
        translate(ps, inv)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return seconds, peak / 2**20, objects


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--clusters", type=int, default=10)
    args = parser.parse_args()
    base: float | None = None
    for n in args.sizes:
        seconds, peak, objects = measure(n, args.clusters)
        base = base or seconds
        print(
            f"{n:>6} VirtualDestinations x {args.clusters} clusters: render {seconds:7.2f} s, "
            f"{objects} objects, peak traced memory {peak:7.1f} MiB, {seconds / base:5.1f}x the {args.sizes[0]} baseline"
        )


if __name__ == "__main__":
    main()
