"""Cross-object checks: rules that need more than one policy to decide.

Each failing policy is moved out of the valid set (and reported) so translation only ever sees
policies that are correct on their own *and* together.
"""

from __future__ import annotations

from collections import defaultdict

from reconciler.findings import Finding, ObjectKey, error
from reconciler.policy.loader import LoadedPolicy, PolicySet
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
    by_host: dict[str, list[LoadedPolicy]] = defaultdict(list)
    for p in policies.by_kind("VirtualDestination"):
        assert isinstance(p.obj, VirtualDestination)
        by_host[p.obj.spec.hostname].append(p)
    for host, owners in by_host.items():
        if len(owners) < 2:
            continue
        owners.sort(key=lambda p: p.key)
        for p in owners:
            others = ", ".join(f"{o.key.namespace}/{o.key.name} ({o.location})" for o in owners if o is not p)
            failures[p].append(
                error(
                    f"hostname {host!r} is also used by VirtualDestination {others}; hostnames must be unique",
                    location=p.location_of(("spec", "hostname")),
                    object=p.key,
                    field="spec.hostname",
                    code="HostnameConflict",
                )
            )


def _mesh_in_one_virtual_mesh(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    owner: dict[tuple[str, str], LoadedPolicy] = {}
    for p in sorted(policies.by_kind("VirtualMesh"), key=lambda p: p.key):
        assert isinstance(p.obj, VirtualMesh)
        for i, mesh in enumerate(p.obj.spec.meshes):
            ref = (mesh.namespace or p.obj.namespace, mesh.name)
            first = owner.get(ref)
            if first is None:
                owner[ref] = p
            elif first is not p:
                failures[p].append(
                    error(
                        f"mesh {ref[1]}.{ref[0]} is already grouped in VirtualMesh "
                        f"{first.key.namespace}/{first.key.name}; a mesh belongs to at most one VirtualMesh",
                        location=p.location_of(("spec", "meshes", i)),
                        object=p.key,
                        field=f"spec.meshes[{i}]",
                        code="MeshConflict",
                    )
                )


def _virtual_mesh_refs(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    meshes = {p.key for p in policies.by_kind("VirtualMesh")} | {
        k for k in policies.invalid if k.kind == "VirtualMesh"
    }
    for p in policies.by_kind("VirtualDestination"):
        assert isinstance(p.obj, VirtualDestination)
        ref = p.obj.spec.virtual_mesh
        if ref is None:
            continue
        key = ObjectKey("VirtualMesh", ref.namespace or p.obj.namespace, ref.name)
        if key not in meshes:
            failures[p].append(
                error(
                    f"VirtualMesh {key.namespace}/{key.name} not found in the repository",
                    location=p.location_of(("spec", "virtualMesh")),
                    object=p.key,
                    field="spec.virtualMesh",
                    code="RefNotFound",
                )
            )


def _traffic_shift_refs(policies: PolicySet, failures: dict[LoadedPolicy, list[Finding]]) -> None:
    destinations = {p.key for p in policies.by_kind("VirtualDestination")} | {
        k for k in policies.invalid if k.kind == "VirtualDestination"
    }
    for p in policies.by_kind("TrafficPolicy"):
        assert isinstance(p.obj, TrafficPolicy)
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
                    error(
                        f"VirtualDestination {key.namespace}/{key.name} not found in the repository",
                        location=p.location_of((*base, i, "virtualDestination")),
                        object=p.key,
                        field=f"spec.policy.trafficShift.destinations[{i}].virtualDestination",
                        code="RefNotFound",
                    )
                )
        weights = [d.weight for d in shift.destinations]
        if len(weights) > 1:
            if any(w is None for w in weights) and any(w is not None for w in weights):
                failures[p].append(
                    error(
                        "some destinations have a weight and some do not; set a weight on every destination "
                        "(or on none, for an equal split)",
                        location=p.location_of(base),
                        object=p.key,
                        field="spec.policy.trafficShift.destinations",
                        code="InvalidWeights",
                    )
                )
            elif all(w == 0 for w in weights):
                failures[p].append(
                    error(
                        "all weights are 0; at least one destination must receive traffic",
                        location=p.location_of(base),
                        object=p.key,
                        field="spec.policy.trafficShift.destinations",
                        code="InvalidWeights",
                    )
                )
        elif weights == [0]:
            failures[p].append(
                error(
                    "the only destination has weight 0; it would receive no traffic",
                    location=p.location_of((*base, 0, "weight")),
                    object=p.key,
                    field="spec.policy.trafficShift.destinations[0].weight",
                    code="InvalidWeights",
                )
            )
