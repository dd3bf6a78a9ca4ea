"""Benchmark: loading and validating 10,000 policies.

Prints the time to load N VirtualDestinations (in 100 files) with :func:`load_and_check`, and, as a
baseline measured in the same run, the time PyYAML alone needs to parse the same files
(``yaml.safe_load_all``). The ratio says what line tracking + pydantic validation + cross-object
checks cost on top of plain parsing.

    .venv/bin/python benchmarks/bench_load.py [--policies 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

from reconciler.policy import load_and_check

VM = """apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {name: virtual-mesh, namespace: gloo-mesh}
spec:
  meshes: [{name: istiod-istio-system-c0, namespace: gloo-mesh}]
"""

VD = """---
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata:
  name: svc-{i}
  namespace: team-{team}
spec:
  hostname: svc-{i}.global
  port: {{number: 8080, protocol: http}}
  localized:
    outlierDetection: {{consecutiveErrors: 2, interval: 5s, baseEjectionTime: 30s, maxEjectionPercent: 100}}
    destinationSelectors:
      - kubeServiceMatcher: {{labels: {{app: svc-{i}}}}}
    failoverDirectives:
      - from: {{region: us-east-1}}
        to: [{{region: us-west-2}}, {{region: eu-west-1}}]
  virtualMesh: {{name: virtual-mesh, namespace: gloo-mesh}}
"""


def generate(root: Path, n: int, files: int = 100) -> None:
    (root / "mesh.yaml").write_text(VM)
    per_file = max(1, n // files)
    for f in range(0, n, per_file):
        text = "".join(VD.format(i=i, team=i % 20) for i in range(f, min(n, f + per_file)))
        (root / f"vd-{f // per_file:04d}.yaml").write_text(text)


def time_it(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policies", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, args.policies)
        files = sorted(root.glob("*.yaml"))

        def baseline() -> None:
            for p in files:
                list(yaml.load_all(p.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

        def ours() -> None:
            ps = load_and_check(root)
            assert len(ps.policies) == args.policies + 1, (len(ps.policies), ps.findings[:3])

        base = time_it(baseline, args.repeat)
        load = time_it(ours, args.repeat)
        tracemalloc.start()
        ours()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    b, m = statistics.median(base), statistics.median(load)
    print(f"policies                 : {args.policies} VirtualDestinations in {len(files) - 1} files")
    print(f"baseline yaml (libyaml) : {b:.3f} s (median of {args.repeat})")
    print(
        f"load_and_check           : {m:.3f} s (median of {args.repeat}) = {m / args.policies * 1e6:.0f} us/policy"
    )
    print(f"ratio load/baseline      : {m / b:.2f}x")
    print(f"peak traced memory       : {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
