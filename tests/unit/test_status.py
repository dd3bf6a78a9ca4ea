"""Status reports: states, generations, per-cluster results, files on disk and their determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.clusters.inventory import Inventory
from reconciler.clusters.snapshot import read_snapshot
from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.findings import ObjectKey, error
from reconciler.policy import PolicySet, load_and_check
from reconciler.status import (
    build_status,
    read_status_dir,
    render_readme,
    report_keys,
    status_commit_message,
    status_file,
    status_fingerprints,
    status_summary,
    write_status_dir,
)
from reconciler.translate import Translation, translate
from tests.unit.helpers import copy_example, write

STATE = Path(__file__).resolve().parents[1] / "golden" / "state" / "bookinfo"
VD = ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global")
TP = ObjectKey("TrafficPolicy", "bookinfo", "reviews-shift-failover")
VM = ObjectKey("VirtualMesh", "gloo-mesh", "virtual-mesh")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def plan(root: Path) -> tuple[PolicySet, Inventory, Translation]:
    policies = load_and_check(root)
    inventory = read_snapshot(STATE)
    return policies, inventory, translate(policies, inventory)


def applied(
    tr: Translation,
    action: Action = Action.UNCHANGED,
    dry_run: bool = False,
    overrides: dict[str, Action] | None = None,
) -> ChangeSet:
    """A change set as the engine would report it: one entry per desired object."""
    changes = ChangeSet(dry_run=dry_run)
    for obj in tr.all_objects():
        result = changes.clusters.setdefault(obj.cluster, ClusterResult(obj.cluster))
        act = (overrides or {}).get(f"{obj.cluster}/{obj.kind}", action)
        result.changes.append(ObjectChange(obj.cluster, obj.kind, obj.namespace, obj.name, act, obj.sources))
    return changes


def status(docs: dict[ObjectKey, dict[str, Any]], key: ObjectKey) -> dict[str, Any]:
    out: dict[str, Any] = docs[key]["status"]
    return out


def condition(st: dict[str, Any], kind: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in st["conditions"] if c["type"] == kind]
    assert len(found) == 1
    return found[0]


# --- states ---------------------------------------------------------------------------------------


def test_example_applied_everywhere_is_accepted(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    docs = build_status(ps, tr, applied(tr, Action.CREATE), inv, COMMIT, {}, False)
    assert sorted(docs) == [TP, VD, VM]
    assert status_summary(docs) == (3, 0, 0, 0)
    vd = status(docs, VD)
    assert docs[VD]["apiVersion"] == "networking.enterprise.mesh.gloo.solo.io/v1beta1"
    assert docs[VD]["metadata"] == {"name": "bookinfo-global", "namespace": "gloo-mesh"}
    assert vd["state"] == "ACCEPTED"
    assert vd["observedCommit"] == COMMIT
    assert vd["observedGeneration"] == 1
    assert vd["specHash"] == ps.spec_hashes[VD]
    assert sorted(vd["clusters"]) == ["mgmt-cluster", "remote-cluster"]
    assert vd["clusters"]["mgmt-cluster"]["objects"] == [
        {
            "kind": "DestinationRule",
            "namespace": "istio-system",
            "name": "vd-bookinfo-global-gloo-mesh",
            "state": "applied",
        },
        {
            "kind": "ServiceEntry",
            "namespace": "istio-system",
            "name": "vd-bookinfo-global-gloo-mesh",
            "state": "applied",
        },
    ]
    assert [c["kubeService"]["clusterName"] for c in vd["selectedDestinations"]] == [
        "mgmt-cluster",
        "remote-cluster",
    ]
    assert [(c["type"], c["status"]) for c in vd["conditions"]] == [
        ("Accepted", "True"),
        ("ResolvedRefs", "True"),
        ("Programmed", "True"),
    ]
    assert condition(vd["clusters"]["remote-cluster"], "Programmed")["status"] == "True"
    assert "selectedDestinations" not in status(docs, TP)


def test_virtual_mesh_without_objects_is_accepted(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    vm = status(build_status(ps, tr, applied(tr), inv, COMMIT, {}, False), VM)
    assert vm["state"] == "ACCEPTED"
    assert vm["clusters"] == {}
    assert condition(vm, "Programmed")["status"] == "True"


def test_invalid_policy_gets_a_report_with_its_findings(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    write(
        repo,
        "broken.yaml",
        """
        apiVersion: networking.mesh.gloo.solo.io/v1
        kind: VirtualMesh
        metadata: {name: broken-mesh, namespace: gloo-mesh}
        spec:
          meshes: [{name: m1, namespace: gloo-mesh}]
          federaton: {}
        """,
    )
    ps, inv, tr = plan(repo)
    key = ObjectKey("VirtualMesh", "gloo-mesh", "broken-mesh")
    assert key in ps.invalid
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, {}, False)
    st = status(docs, key)
    assert docs[key]["apiVersion"] == "networking.mesh.gloo.solo.io/v1"
    assert st["state"] == "INVALID"
    assert st["specHash"] == ps.spec_hashes[key]
    assert len(st["errors"]) == 1
    assert st["errors"][0].startswith(
        "broken.yaml:6:3: VirtualMesh gloo-mesh/broken-mesh: spec.federaton: unknown field"
    )
    assert condition(st, "Accepted") | {"message": ""} == {
        "type": "Accepted",
        "status": "False",
        "reason": "Invalid",
        "message": "",
        "observedGeneration": 1,
    }
    assert condition(st, "Programmed")["status"] == "False"
    assert status_summary(docs) == (3, 1, 0, 0)


def test_invalid_policy_lists_its_held_objects(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    ps.invalid[ObjectKey("TrafficPolicy", "bookinfo", "gone-bad")] = ps.policies[0].location
    changes = applied(tr)
    held_key = ObjectKey("TrafficPolicy", "bookinfo", "gone-bad")
    changes.clusters["mgmt-cluster"].changes.append(
        ObjectChange("mgmt-cluster", "VirtualService", "bookinfo", "old", Action.HELD, (held_key,))
    )
    st = status(build_status(ps, tr, changes, inv, COMMIT, {}, False), held_key)
    assert st["state"] == "INVALID"
    mgmt = st["clusters"]["mgmt-cluster"]
    assert mgmt["objects"] == [
        {"kind": "VirtualService", "namespace": "bookinfo", "name": "old", "state": "held"}
    ]
    assert "1 live object(s) kept" in mgmt["message"]


def test_translation_conflict_makes_policy_invalid(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    tr.outcome(TP).findings.append(error("route also set by another policy", object=TP, code="Conflict"))
    st = status(build_status(ps, tr, applied(tr), inv, COMMIT, {}, False), TP)
    assert st["state"] == "INVALID"
    assert st["errors"] == ["TrafficPolicy bookinfo/reviews-shift-failover: route also set by another policy"]


def test_api_rejection_is_reported_on_every_contributing_policy(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    changes = applied(tr)
    # One object built from two policies, rejected by the API server.
    changes.clusters["mgmt-cluster"].changes.append(
        ObjectChange(
            "mgmt-cluster",
            "VirtualService",
            "bookinfo",
            "shared",
            Action.FAILED,
            (TP, VD),
            message='admission webhook "validation.istio.io" denied the request: bad host',
        )
    )
    docs = build_status(ps, tr, changes, inv, COMMIT, {}, False)
    for key in (TP, VD):
        st = status(docs, key)
        assert st["state"] == "FAILED"
        mgmt = st["clusters"]["mgmt-cluster"]
        assert mgmt["state"] == "FAILED"
        assert "denied the request: bad host" in mgmt["message"]
        assert any("VirtualService bookinfo/shared" in e and "bad host" in e for e in st["errors"])
        assert condition(st, "Programmed")["status"] == "False"
        assert condition(st, "Accepted")["status"] == "True"
    assert status(docs, VD)["clusters"]["remote-cluster"]["state"] == "ACCEPTED"
    assert status(docs, VM)["state"] == "ACCEPTED"
    assert status_summary(docs) == (1, 0, 2, 0)


def test_conflict_with_unowned_object_fails_the_policy(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    changes = applied(tr, overrides={"mgmt-cluster/VirtualService": Action.CONFLICT})
    changes.clusters["mgmt-cluster"].changes[-1].message = "exists without our ownership label (see --adopt)"
    st = status(build_status(ps, tr, changes, inv, COMMIT, {}, False), TP)
    assert st["state"] == "FAILED"
    assert "ownership label" in st["clusters"]["mgmt-cluster"]["message"]


def test_unreachable_cluster_fails_dependents_and_held_objects(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    changes = applied(
        tr, overrides={"mgmt-cluster/ServiceEntry": Action.HELD, "mgmt-cluster/DestinationRule": Action.HELD}
    )
    changes.clusters["remote-cluster"] = ClusterResult(
        "remote-cluster", error="dial tcp 10.0.0.2:6443: connection refused"
    )
    docs = build_status(ps, tr, changes, inv, COMMIT, {}, False)
    vd = status(docs, VD)
    assert vd["state"] == "FAILED"
    assert (
        vd["clusters"]["remote-cluster"]["message"]
        == "cluster unreachable: dial tcp 10.0.0.2:6443: connection refused"
    )
    mgmt = vd["clusters"]["mgmt-cluster"]
    assert mgmt["state"] == "FAILED"
    assert mgmt["message"].startswith("held: DestinationRule istio-system/vd-bookinfo-global-gloo-mesh")
    assert "remote-cluster" in mgmt["message"]
    # The TrafficPolicy's VirtualService depends on mgmt-cluster only: unaffected.
    assert status(docs, TP)["state"] == "ACCEPTED"


def test_held_prune_of_a_valid_policy_is_not_a_failure(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    changes = applied(tr)
    changes.clusters["mgmt-cluster"].changes.append(
        ObjectChange(
            "mgmt-cluster",
            "VirtualService",
            "bookinfo",
            "leftover",
            Action.HELD,
            (TP,),
            message="pruning suspended",
        )
    )
    st = status(build_status(ps, tr, changes, inv, COMMIT, {}, False), TP)
    assert st["state"] == "ACCEPTED"


def test_dry_run_and_no_changes_are_pending(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    dry = build_status(ps, tr, applied(tr, Action.CREATE, dry_run=True), inv, COMMIT, {}, False)
    assert status_summary(dry) == (0, 0, 0, 3)
    vd = status(dry, VD)
    assert condition(vd, "Programmed") | {"message": ""} == {
        "type": "Programmed",
        "status": "Unknown",
        "reason": "DryRun",
        "message": "",
        "observedGeneration": 1,
    }
    assert vd["clusters"]["mgmt-cluster"]["state"] == "PENDING"
    assert status_summary(build_status(ps, tr, applied(tr), inv, COMMIT, {}, True)) == (0, 0, 0, 3)
    none = build_status(ps, tr, None, inv, COMMIT, {}, False)
    assert status_summary(none) == (0, 0, 0, 3)
    objs = status(none, VD)["clusters"]["remote-cluster"]["objects"]
    assert objs == [
        {"kind": "DestinationRule", "namespace": "istio-system", "name": "vd-bookinfo-global-gloo-mesh"},
        {"kind": "ServiceEntry", "namespace": "istio-system", "name": "vd-bookinfo-global-gloo-mesh"},
    ]


def test_unresolved_references_set_resolved_refs_false(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    tr.outcome(VD).unresolved = "selectors match no service"
    st = status(build_status(ps, tr, applied(tr), inv, COMMIT, {}, False), VD)
    assert condition(st, "ResolvedRefs") | {"observedGeneration": 0} == {
        "type": "ResolvedRefs",
        "status": "False",
        "reason": "UnresolvedRefs",
        "message": "selectors match no service",
        "observedGeneration": 0,
    }


def test_missing_reference_found_by_checks_sets_resolved_refs_false(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    text = (repo / "reviews-shift-failover.yaml").read_text().replace("name: bookinfo-global", "name: nope")
    (repo / "reviews-shift-failover.yaml").write_text(text)
    ps, inv, tr = plan(repo)
    st = status(build_status(ps, tr, applied(tr), inv, COMMIT, {}, False), TP)
    assert st["state"] == "INVALID"
    assert condition(st, "ResolvedRefs")["status"] == "False"
    assert condition(st, "ResolvedRefs")["reason"] == "RefNotFound"


# --- generations ----------------------------------------------------------------------------------


def test_generation_bumps_on_spec_change_only(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    ps, inv, tr = plan(repo)
    first = build_status(ps, tr, applied(tr), inv, COMMIT, {}, False)
    assert {status(first, k)["observedGeneration"] for k in first} == {1}
    write_status_dir(repo, "status", first, COMMIT)
    previous = read_status_dir(repo, "status")
    assert previous == first

    # Reformatting only: key order, flow style, comments, quoting. Same spec content -> same generation.
    (repo / "virtual-mesh.yaml").write_text(
        "# reformatted\n"
        "kind: VirtualMesh\n"
        "apiVersion: 'networking.mesh.gloo.solo.io/v1'\n"
        "metadata: {namespace: gloo-mesh, name: virtual-mesh}\n"
        "spec:\n"
        "  federation: {selectors: [{}]}\n"
        "  mtlsConfig: {shared: {rootCertificateAuthority: {generated: {}}}, autoRestartPods: true}\n"
        "  meshes:\n"
        "  - {namespace: gloo-mesh, name: istiod-istio-system-mgmt-cluster}\n"
        "  - {namespace: gloo-mesh, name: istiod-istio-system-remote-cluster}\n"
    )
    ps, inv, tr = plan(repo)
    second = build_status(ps, tr, applied(tr), inv, COMMIT, previous, False)
    assert second == first

    # A real change to the VirtualDestination's spec bumps its generation (and its conditions').
    text = (
        (repo / "bookinfo-global.yaml").read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 60s")
    )
    (repo / "bookinfo-global.yaml").write_text(text)
    ps, inv, tr = plan(repo)
    write_status_dir(repo, "status", second, COMMIT)
    third = build_status(ps, tr, applied(tr), inv, "f" * 40, read_status_dir(repo, "status"), False)
    assert status(third, VD)["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in status(third, VD)["conditions"]} == {2}
    assert status(third, TP)["observedGeneration"] == 1
    assert status(third, VM)["observedGeneration"] == 1
    write_status_dir(repo, "status", third, "f" * 40)
    # And it stays at 2 while the spec stays.
    fourth = build_status(ps, tr, applied(tr), inv, "f" * 40, read_status_dir(repo, "status"), False)
    assert status(fourth, VD)["observedGeneration"] == 2


# --- files ----------------------------------------------------------------------------------------


def test_write_is_idempotent_and_deterministic(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, {}, False)
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    assert write_status_dir(out_a, "status", docs, COMMIT) is True
    assert write_status_dir(out_a, "status", docs, COMMIT) is False
    again = build_status(ps, tr, applied(tr), inv, COMMIT, read_status_dir(out_a, "status"), False)
    assert write_status_dir(out_a, "status", again, COMMIT) is False
    assert write_status_dir(out_b, "status", dict(reversed(list(docs.items()))), COMMIT) is True
    files_a = sorted(p.relative_to(out_a) for p in out_a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(out_b) for p in out_b.rglob("*") if p.is_file())
    assert files_a == files_b
    assert [str(p) for p in files_a] == [
        "status/README.md",
        "status/TrafficPolicy/bookinfo/reviews-shift-failover.yaml",
        "status/VirtualDestination/gloo-mesh/bookinfo-global.yaml",
        "status/VirtualMesh/gloo-mesh/virtual-mesh.yaml",
    ]
    for rel in files_a:
        assert (out_a / rel).read_bytes() == (out_b / rel).read_bytes()
    # Valid YAML, keys sorted, no volatile fields.
    text = (out_a / "status/VirtualDestination/gloo-mesh/bookinfo-global.yaml").read_text()
    assert yaml.safe_load(text) == docs[VD]
    assert "Time" not in text and "timestamp" not in text.lower()


def test_readme_table(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    changes = applied(tr)
    changes.clusters["remote-cluster"] = ClusterResult("remote-cluster", error="timeout")
    docs = build_status(ps, tr, changes, inv, COMMIT, {}, False)
    readme = render_readme(docs, COMMIT)
    assert readme == render_readme(dict(reversed(list(docs.items()))), COMMIT)
    assert f"Last reconciled commit: `{COMMIT}`" in readme
    assert "| Policy | State | mgmt-cluster | remote-cluster |" in readme
    assert (
        "| [VirtualDestination gloo-mesh/bookinfo-global](VirtualDestination/gloo-mesh/bookinfo-global.yaml)"
        " | FAILED | ACCEPTED | FAILED |" in readme
    )
    assert (
        "| [VirtualMesh gloo-mesh/virtual-mesh](VirtualMesh/gloo-mesh/virtual-mesh.yaml) | ACCEPTED | - | - |"
        in readme
    )
    assert "remote-cluster: cluster unreachable: timeout" in readme
    write_status_dir(tmp_path / "out", "status", docs, COMMIT)
    assert (tmp_path / "out/status/README.md").read_text() == readme


def test_status_of_deleted_policy_is_removed(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    ps, inv, tr = plan(repo)
    write_status_dir(repo, "status", build_status(ps, tr, applied(tr), inv, COMMIT, {}, False), COMMIT)
    (repo / "reviews-shift-failover.yaml").unlink()
    (repo / "status" / "notes.txt").write_text("kept: not a report\n")
    ps, inv, tr = plan(repo)
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, read_status_dir(repo, "status"), False)
    assert TP not in docs
    assert write_status_dir(repo, "status", docs, COMMIT) is True
    assert not (repo / "status" / "TrafficPolicy").exists()  # empty directories go too
    assert (repo / "status" / "notes.txt").exists()
    assert "reviews-shift-failover" not in (repo / "status" / "README.md").read_text()
    assert sorted(read_status_dir(repo, "status")) == [VD, VM]


def test_read_tolerates_garbage(tmp_path: Path) -> None:
    status_root = tmp_path / "status"
    write(status_root, "VirtualMesh/ns/ok.yaml", "status: {observedGeneration: 3, specHash: abc}\n")
    write(status_root, "VirtualMesh/ns/broken.yaml", "status: [\n")
    write(status_root, "VirtualMesh/ns/list.yaml", "- 1\n")
    write(status_root, "VirtualMesh/ns/nostatus.yaml", "kind: VirtualMesh\n")
    write(status_root, "VirtualMesh/ns/binary.yaml", "")
    (status_root / "VirtualMesh/ns/binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    write(status_root, "VirtualMesh/ns/alias.yaml", "a: &a [*a]\nstatus: {}\n")
    write(status_root, "toplevel.yaml", "status: {}\n")
    write(status_root, "README.md", "# hi\n")
    (status_root / "VirtualMesh/dir.yaml").mkdir()
    found = read_status_dir(tmp_path, "status")
    assert set(found) == {ObjectKey("VirtualMesh", "ns", "ok"), ObjectKey("VirtualMesh", "ns", "alias")}
    assert read_status_dir(tmp_path, "missing") == {}


def test_generation_survives_a_garbage_previous_report(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    previous: dict[ObjectKey, dict[str, Any]] = {
        VD: {"status": {"observedGeneration": "seven", "specHash": "x"}},
        TP: {"status": {"observedGeneration": 4, "specHash": ps.spec_hashes[TP]}},
        VM: {"status": "nonsense"},
    }
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, previous, False)
    assert status(docs, VD)["observedGeneration"] == 1
    assert status(docs, TP)["observedGeneration"] == 4
    assert status(docs, VM)["observedGeneration"] == 1


def test_unsafe_names_stay_inside_the_status_directory(tmp_path: Path) -> None:
    key = ObjectKey("VirtualMesh", "..", "../../escape")
    assert status_file(key) == "VirtualMesh/%2E./%2E.%2F..%2Fescape.yaml"
    docs = {key: {"kind": "VirtualMesh", "status": {"state": "INVALID"}}}
    root = tmp_path / "repo"
    assert write_status_dir(root, "status", docs, COMMIT)
    assert not (tmp_path / "escape.yaml").exists()
    assert set(read_status_dir(root, "status")) == {key}
    with pytest.raises(ValueError):
        write_status_dir(root, "../elsewhere", docs, COMMIT)
    with pytest.raises(ValueError):
        write_status_dir(root, "/abs", docs, COMMIT)


def test_status_path_symlink_outside_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "status").symlink_to(tmp_path / "outside")
    with pytest.raises(ValueError, match="outside the repository"):
        write_status_dir(root, "status", {}, COMMIT)


def test_commit_message(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    changes = applied(tr, overrides={"mgmt-cluster/VirtualService": Action.FAILED})
    docs = build_status(ps, tr, changes, inv, "abcdef0123456789", {}, False)
    assert (
        status_commit_message(docs, "abcdef0123456789")
        == "status: reconcile abcdef0: 2 accepted, 0 invalid, 1 failed"
    )
    pending = build_status(ps, tr, None, inv, COMMIT, {}, False)
    assert status_commit_message(pending, COMMIT).endswith(", 3 pending")


# --- what istiod said about our objects -------------------------------------------------------------


def _with_analysis(
    inv: Inventory, tr: Translation, kind: str, messages: list[dict[str, Any]], **status: Any
) -> str:
    """Put a live copy of mgmt-cluster's rendered ``kind`` in the inventory, with istiod's status."""
    obj = next(o for o in tr.all_objects() if o.cluster == "mgmt-cluster" and o.kind == kind)
    live = {**obj.body, "metadata": {**obj.body["metadata"], "generation": 3}}
    live["status"] = {"validationMessages": messages, **status}
    inv.clusters["mgmt-cluster"].managed.append(live)
    return f"{kind} {obj.namespace}/{obj.name}"


def test_istiod_analysis_error_fails_the_policy_with_the_message(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    label = _with_analysis(
        inv,
        tr,
        "VirtualService",
        [
            {
                "type": {"code": "IST0101"},  # as istiod writes it: code and URL, no name, no text
                "level": "ERROR",
                "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
            }
        ],
        observedGeneration="3",
    )
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, {}, False)
    tp = status(docs, TP)
    assert tp["state"] == "FAILED"
    entry = tp["clusters"]["mgmt-cluster"]
    assert entry["state"] == "FAILED"
    assert entry["controlPlane"] == [
        {
            "object": label,
            "code": "IST0101",
            "level": "ERROR",
            "message": "ERROR IST0101 ReferencedResourceNotFound: "
            "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
        }
    ]
    programmed = entry["conditions"][0]
    assert (programmed["status"], programmed["reason"]) == ("False", "IstioAnalysis")
    assert "IST0101" in programmed["message"]
    assert any("IST0101" in e for e in tp["errors"])
    assert condition(tp, "Programmed")["status"] == "False"
    # the other cluster and the other policies are untouched
    assert tp["clusters"].get("remote-cluster", {}).get("state", "ACCEPTED") == "ACCEPTED"
    assert status(docs, VM)["state"] == "ACCEPTED"


def test_istiod_analysis_warning_keeps_accepted_and_stale_messages_are_ignored(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    _with_analysis(
        inv,
        tr,
        "DestinationRule",
        [{"code": "IST0173", "level": "Warn", "message": "subset selects no pods"}],
    )
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, {}, False)
    vd = status(docs, VD)
    entry = vd["clusters"]["mgmt-cluster"]
    assert vd["state"] == entry["state"] == "ACCEPTED"
    assert entry["conditions"][0]["reason"] == "IstioAnalysis"
    assert entry["controlPlane"][0]["message"] == (
        "WARNING IST0173 DestinationRuleSubsetNotSelectPods: subset selects no pods"
    )
    assert any("subset selects no pods" in w for w in vd["warnings"])

    # istiod analysed generation 2, the object is at 3 now: the message is not reported
    ps, inv, tr = plan(copy_example(tmp_path / "again"))
    _with_analysis(
        inv,
        tr,
        "DestinationRule",
        [{"code": "IST0173", "level": "WARNING", "message": "old"}],
        observedGeneration=2,
    )
    docs = build_status(ps, tr, applied(tr), inv, COMMIT, {}, False)
    entry = status(docs, VD)["clusters"]["mgmt-cluster"]
    assert "controlPlane" not in entry and entry["conditions"][0]["reason"] == "Programmed"


def test_istiod_analysis_of_an_object_rewritten_in_this_pass_waits_for_the_next(tmp_path: Path) -> None:
    ps, inv, tr = plan(copy_example(tmp_path))
    _with_analysis(inv, tr, "VirtualService", [{"type": {"code": "IST0101"}, "level": "ERROR"}])
    rewritten = applied(tr, overrides={"mgmt-cluster/VirtualService": Action.CONFIGURE})
    entry = status(build_status(ps, tr, rewritten, inv, COMMIT, {}, False), TP)["clusters"]["mgmt-cluster"]
    assert entry["state"] == "ACCEPTED" and "controlPlane" not in entry
    entry = status(build_status(ps, tr, applied(tr), inv, COMMIT, {}, False), TP)["clusters"]["mgmt-cluster"]
    assert entry["state"] == "FAILED" and entry["controlPlane"][0]["code"] == "IST0101"


# --- fingerprint: what a replay of the last pass's reports is keyed by -----------------------------


def test_the_fingerprints_name_every_input_of_the_reports(tmp_path: Path) -> None:
    """Each input build_status reads changes the fingerprints of the reports that read it: a shared
    input (build, commit, dry run, a cluster's error, istiod's analysis) every report's, a policy's
    own changes only its report's. Equal inputs (distinct objects) give equal fingerprints."""
    ps, inv, tr = plan(copy_example(tmp_path))
    keys = report_keys(ps)

    def fps(
        build: str = "build-1", changes: ChangeSet | None = None, commit: str = COMMIT, dry_run: bool = False
    ) -> dict[ObjectKey, str]:
        return status_fingerprints(build, keys, changes or applied(tr), inv, commit, dry_run)

    base = fps()
    assert sorted(base) == [TP, VD, VM] and len(set(base.values())) == 3
    assert base == status_fingerprints("build-1", keys, applied(tr), read_snapshot(STATE), COMMIT)
    gone = applied(tr)
    gone.clusters["remote-cluster"].error = "connection refused"
    shared = {
        "build": fps(build="build-2"),
        "commit": fps(commit="f" * 40),
        "dry run": fps(dry_run=True),
        "a cluster error": fps(changes=gone),
    }
    # A dry run said by the flag or by the change set is the same input (build_status reads either).
    assert fps(changes=applied(tr, dry_run=True)) == shared["dry run"]

    # Per policy: what happened to an object changes the reports of the policies it came from.
    failed = applied(tr)
    only_vd = next(c for c in failed.all() if c.sources == (VD,))
    only_vd.message = "rejected by the API server"
    got = fps(changes=failed)
    assert [k for k in keys if got[k] != base[k]] == [VD]
    rule = next(c for c in applied(tr).all() if c.cluster == "mgmt-cluster" and c.kind == "DestinationRule")
    got = fps(changes=applied(tr, overrides={"mgmt-cluster/DestinationRule": Action.FAILED}))
    assert {k for k in keys if got[k] != base[k]} == set(rule.sources)

    _with_analysis(inv, tr, "VirtualService", [{"type": {"code": "IST0101"}, "level": "ERROR"}])
    shared["istiod analysis"] = fps()
    for name, variant in shared.items():
        assert all(variant[k] != base[k] for k in keys), name
    assert len({tuple(v.values()) for v in shared.values()}) == len(shared)


@pytest.mark.parametrize("scenario", ["accepted", "failed", "unreachable", "dry run", "spec change"])
def test_the_same_inputs_give_the_same_reports(tmp_path: Path, scenario: str) -> None:
    """What a replay relies on: reports built again from the reports they produced are unchanged
    (including the pass after a generation bump)."""
    repo = copy_example(tmp_path)
    ps, inv, tr = plan(repo)
    changes = applied(tr, dry_run=scenario == "dry run")
    if scenario == "failed":
        changes = applied(tr, overrides={"remote-cluster/DestinationRule": Action.FAILED})
    if scenario == "unreachable":
        changes.clusters["remote-cluster"].error = "connection refused"
    previous = build_status(ps, tr, changes, inv, COMMIT, {}, False)
    if scenario == "spec change":
        text = (repo / "bookinfo-global.yaml").read_text()
        (repo / "bookinfo-global.yaml").write_text(
            text.replace("baseEjectionTime: 120s", "baseEjectionTime: 60s")
        )
        ps, inv, tr = plan(repo)
        changes = applied(tr)
    first = build_status(ps, tr, changes, inv, COMMIT, previous, False)
    write_status_dir(repo, "status", first, COMMIT)
    again = build_status(ps, tr, changes, inv, COMMIT, read_status_dir(repo, "status"), False)
    assert again == first
    if scenario == "spec change":
        assert status(first, VD)["observedGeneration"] == 2
