"""Cross-object checks: rules that need more than one policy to decide.

Each failing policy is moved out of the valid set (and reported) so translation only ever sees
policies that are correct on their own *and* together.
"""

from __future__ import annotations

from collections import defaultdict

from reconciler.findings import Finding, ObjectKey
from reconciler.policy.loader import Loaded, LoadedPolicy, PolicySet
from reconciler.policy.model import TrafficPolicy, VirtualDestination, VirtualMesh


def check_policy_set(policies: PolicySet) -> None:
    """Run every cross-object rule; failing policies become invalid (in place)."""
    failures: dict[LoadedPolicy, list[Finding]] = defaultdict(list)

    _unique_hostnames(policies, failures)
    _mesh_in_one_virtual_mesh(policies, failures)
    _virtual_mesh_refs(policies, failures)
    _traffic_shift_refs(policies, failures)

    for policy, findings in sorted(failures.items(), key=lambda item: item[0].key):
        policies.mark_invalid(policy, findings)


def _unique_hostnames(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    by_host: dict[str, list[Loaded[VirtualDestination]]] = defaultdict(list)
    for p in policies.by_kind(VirtualDestination):
        by_host[p.obj.spec.hostname].append(p)
    for host, owners in by_host.items():
        if len(owners) < 2:
            continue
        owners.sort(key=lambda p: p.key)
        for p in owners:
            others = ", ".join(f"{o.key.namespace}/{o.key.name} ({o.location})" for o in owners if o is not p)
            failures[p].append(
                p.error_at(
                    ("spec", "hostname"),
                    f"hostname {host!r} is also used by VirtualDestination {others}; hostnames must be unique",
                    code="HostnameConflict",
                )
            )


def _mesh_in_one_virtual_mesh(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    owner: dict[tuple[str, str], LoadedPolicy] = {}
    for p in sorted(policies.by_kind(VirtualMesh), key=lambda p: p.key):
        for i, mesh in enumerate(p.obj.spec.meshes):
            ref = (mesh.namespace or p.obj.namespace, mesh.name)
            first = owner.get(ref)
            if first is None:
                owner[ref] = p
            elif first is not p:
                failures[p].append(
                    p.error_at(
                        ("spec", "meshes", i),
                        f"mesh {ref[1]}.{ref[0]} is already grouped in VirtualMesh "
                        f"{first.key.namespace}/{first.key.name}; a mesh belongs to at most one VirtualMesh",
                        code="MeshConflict",
                    )
                )


def _virtual_mesh_refs(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    meshes = {p.key for p in policies.by_kind(VirtualMesh)} | {
        k for k in policies.invalid if k.kind == "VirtualMesh"
    }
    for p in policies.by_kind(VirtualDestination):
        ref = p.obj.spec.virtual_mesh
        if ref is None:
            continue
        key = ObjectKey("VirtualMesh", ref.namespace or p.obj.namespace, ref.name)
        if key not in meshes:
            failures[p].append(
                p.error_at(
                    ("spec", "virtualMesh"),
                    f"VirtualMesh {key.namespace}/{key.name} not found in the repository",
                    code="RefNotFound",
                )
            )


def _traffic_shift_refs(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    destinations = {p.key for p in policies.by_kind(VirtualDestination)} | {
        k for k in policies.invalid if k.kind == "VirtualDestination"
    }
    for p in policies.by_kind(TrafficPolicy):
        shift = p.obj.spec.policy.traffic_shift
        if shift is None:
            continue
        base = ("spec", "policy", "trafficShift", "destinations")
        for i, dest in enumerate(shift.destinations):
            vd = dest.virtual_destination
            if vd is None:
                continue
            key = ObjectKey("VirtualDestination", vd.namespace or p.obj.namespace, vd.name)
            if key not in destinations:
                failures[p].append(
                    p.error_at(
                        (*base, i, "virtualDestination"),
                        f"VirtualDestination {key.namespace}/{key.name} not found in the repository",
                        code="RefNotFound",
                    )
                )
        weights = [d.weight for d in shift.destinations]
        if len(weights) > 1:
            if any(w is None for w in weights) and any(w is not None for w in weights):
                failures[p].append(
                    p.error_at(
                        base,
                        "some destinations have a weight and some do not; set a weight on every destination "
                        "(or on none, for an equal split)",
                        code="InvalidWeights",
                    )
                )
            elif all(w == 0 for w in weights):
                failures[p].append(
                    p.error_at(
                        base,
                        "all weights are 0; at least one destination must receive traffic",
                        code="InvalidWeights",
                    )
                )
        elif weights == [0]:
            failures[p].append(
                p.error_at(
                    (*base, 0, "weight"),
                    "the only destination has weight 0; it would receive no traffic",
                    code="InvalidWeights",
                )
            )
