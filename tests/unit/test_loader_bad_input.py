"""Bad input the loader must survive: clear message, no traceback, nothing else lost."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from reconciler.engine.changeset import Action
from reconciler.engine.sync import SyncOptions, sync
from reconciler.findings import Location, ObjectKey, Severity
from reconciler.plan import ClusterSource, build_plan
from reconciler.policy import loader as loader_mod
from tests.unit.helpers import copy_example, load, write

STATE = Path(__file__).resolve().parents[1] / "golden" / "state" / "bookinfo"

VM = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {name: vm, namespace: ns}
spec:
  meshes: [{name: m1, namespace: gloo-mesh}]
"""


def test_malformed_yaml_reported_with_position_and_others_still_load(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    write(repo, "broken.yaml", "kind: VirtualMesh\nmetadata: {name: [\n")
    ps = load(repo)
    [finding] = ps.errors
    assert finding.location is not None
    assert (finding.location.file, finding.location.line) == ("broken.yaml", 3)
    assert finding.message.startswith("malformed YAML:")
    assert len(ps.policies) == 3
    assert ps.unreadable_files == ["broken.yaml"]


def test_document_that_is_a_list_or_scalar(tmp_path: Path) -> None:
    write(tmp_path, "list.yaml", "- a\n- b\n")
    write(tmp_path, "scalar.yaml", "just text\n")
    ps = load(tmp_path)
    assert sorted(f.format() for f in ps.errors) == [
        "list.yaml:1:1: document is a list; each YAML document must be one object with apiVersion, kind and metadata",
        "scalar.yaml:1:1: document is a str scalar; each YAML document must be one object with apiVersion, kind "
        "and metadata",
    ]


def test_multi_document_file_and_empty_documents(tmp_path: Path) -> None:
    write(
        tmp_path,
        "all.yaml",
        "---\n"
        + VM.lstrip()
        + "---\n---\n"
        + VM.replace("name: vm,", "name: vm2,").lstrip().replace("m1", "m2"),
    )
    ps = load(tmp_path)
    assert ps.findings == []
    assert [p.location.line for p in ps.policies] == [2, 9]


def test_kubectl_list_is_expanded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "list.yaml",
        """
        apiVersion: v1
        kind: List
        items:
          - apiVersion: networking.mesh.gloo.solo.io/v1
            kind: VirtualMesh
            metadata: {name: vm, namespace: ns}
            spec: {meshes: [{name: m1}], bogus: 1}
    """,
    )
    ps = load(tmp_path)
    [finding] = ps.errors
    assert finding.format().startswith("list.yaml:7:34: VirtualMesh ns/vm: spec.bogus: unknown field")


def test_duplicate_objects_name_both_locations(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VM)
    write(tmp_path, "sub/b.yaml", "# comment\n" + VM.lstrip())
    ps = load(tmp_path)
    assert sorted(f.format() for f in ps.errors) == [
        "a.yaml:1:1: VirtualMesh ns/vm: duplicate object: also defined at sub/b.yaml:2:1",
        "sub/b.yaml:2:1: VirtualMesh ns/vm: duplicate object: also defined at a.yaml:1:1",
    ]
    assert ps.policies == []
    assert ObjectKey("VirtualMesh", "ns", "vm") in ps.invalid


def test_unknown_kind_is_a_warning_and_skipped(tmp_path: Path) -> None:
    write(tmp_path, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    write(tmp_path, "vm.yaml", VM)
    ps = load(tmp_path)
    assert ps.errors == []
    [w] = ps.findings
    assert w.severity is Severity.WARNING
    assert w.format() == (
        "cm.yaml:1:1: unknown kind v1/ConfigMap; skipped (understood: VirtualDestination, TrafficPolicy, VirtualMesh)"
    )
    assert len(ps.policies) == 1


def test_missing_kind(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", "metadata: {name: x}\nspec: {}\n")
    [finding] = load(tmp_path).errors
    assert "no apiVersion/kind" in finding.message


def test_huge_file_refused(tmp_path: Path, monkeypatch: object) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (loader_mod.MAX_FILE_BYTES + 10) + "\n")
    write(tmp_path, "vm.yaml", VM)
    ps = load(tmp_path)
    [finding] = ps.errors
    assert finding.code == "TooLarge"
    assert "huge.yaml" in finding.format()
    assert len(ps.policies) == 1


def test_alias_bomb_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    [finding] = load(tmp_path).errors
    assert finding.code == "TooLarge"
    assert "alias bomb" in finding.message


def test_binary_file_refused(tmp_path: Path) -> None:
    (tmp_path / "blob.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    ps = load(tmp_path)
    assert sorted(f.code for f in ps.errors) == ["Binary", "Binary"]


def test_symlink_leaving_repository_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    write(outside, "secret.yaml", VM)
    repo = tmp_path / "repo"
    repo.mkdir()
    os.symlink(outside / "secret.yaml", repo / "link.yaml")
    os.symlink(outside, repo / "linkdir")
    ps = load(repo)
    assert sorted(f.code for f in ps.errors) == ["SymlinkEscape", "SymlinkEscape"]
    assert ps.policies == []


def test_symlink_inside_repository_followed(tmp_path: Path) -> None:
    write(tmp_path, "real/vm.yaml", VM)
    os.symlink(tmp_path / "real" / "vm.yaml", tmp_path / "alias.yaml")
    ps = load(tmp_path)
    # Both paths name the same object: the duplicate is reported rather than silently merged.
    assert {f.code for f in ps.errors} == {"Duplicate"}


def test_status_dir_hidden_dirs_and_reconciler_yaml_are_not_policies(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM)
    write(tmp_path, "status/VirtualMesh/ns/vm.yaml", VM)
    write(tmp_path, ".github/workflow.yaml", "on: push\n")
    write(tmp_path, "reconciler.yaml", "clusters: {}\n")
    write(tmp_path, "notes.txt", "not yaml")
    ps = load(tmp_path)
    assert ps.findings == []
    assert len(ps.policies) == 1


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM + "  meshes: [{name: m9}]\n")
    [finding] = load(tmp_path).errors
    assert finding.code == "DuplicateKey"
    assert finding.format().startswith("vm.yaml:6:3: VirtualMesh ns/vm: spec.meshes: duplicate key 'meshes'")


def test_missing_name_protects_prune(tmp_path: Path) -> None:
    write(tmp_path, "vm.yaml", VM.replace("{name: vm, namespace: ns}", "{namespace: ns}"))
    ps = load(tmp_path)
    [finding] = ps.errors
    assert finding.field == "metadata.name"
    assert ps.unreadable_files == ["vm.yaml"]


def test_unreadable_root_raises_for_cli_exit_2(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope")


def test_non_string_keys_are_reported_not_crashed(tmp_path: Path) -> None:
    # Found by the property test: `&a meshes:` anchors the key and YAML reads a null key.
    write(tmp_path, "vm.yaml", VM.replace("  meshes:", "  &ameshes:"))
    ps = load(tmp_path)
    assert ps.errors
    assert all(f.location is not None and f.location.line > 0 for f in ps.errors)


# --- recursive aliases, alias-made depth and unconstructable scalars ---------------------------------

RECURSIVE_VD = """
apiVersion: networking.gloo.solo.io/v2
kind: VirtualDestination
metadata: {name: x, namespace: gloo-mesh}
spec: &a {self: *a}
"""


def test_recursive_alias_is_one_finding_and_everything_else_loads(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    write(repo, "x.yaml", RECURSIVE_VD)
    ps = load(repo)  # used to end in RecursionError (spec hashing, then pydantic)
    [finding] = ps.findings
    assert finding.severity is Severity.ERROR
    assert finding.code == "RecursiveAlias"
    assert finding.format().startswith(
        "x.yaml:4:11: VirtualDestination gloo-mesh/x: recursive YAML alias (an anchor used inside itself)"
    )
    assert finding.message.endswith("refused")
    assert len(ps.policies) == 3
    assert ps.unreadable_files == ["x.yaml"]
    # Its identity is still readable, so whatever it produced before is held, not pruned.
    assert ObjectKey("VirtualDestination", "gloo-mesh", "x") in ps.invalid


def test_recursive_alias_variants(tmp_path: Path) -> None:
    write(tmp_path, "seq.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: &a [1, *a]\n")
    write(tmp_path, "merge.yaml", "a: &a\n  b: 1\n  <<: *a\n")
    write(tmp_path, "key.yaml", "? &a [*a]\n: 1\n")
    write(tmp_path, "deep.yaml", "a: &a\n  b:\n    c:\n      - d: *a\n")
    write(tmp_path, "in-list.yaml", "apiVersion: v1\nkind: List\nitems:\n  - &i {kind: VirtualMesh, x: *i}\n")
    write(tmp_path, "vm.yaml", VM)
    ps = load(tmp_path)
    by_file = {f.location.file: f for f in ps.findings if f.location is not None}
    assert sorted(by_file) == ["deep.yaml", "in-list.yaml", "key.yaml", "merge.yaml", "seq.yaml"]
    assert len(ps.findings) == 5
    assert all(f.code == "RecursiveAlias" and f.is_error for f in ps.findings)
    assert all(f.location is not None and f.location.line > 0 for f in ps.findings)
    assert by_file["deep.yaml"].location == Location("deep.yaml", 4, 9)
    assert sorted(ps.unreadable_files) == sorted(by_file)
    assert [p.key.name for p in ps.policies] == ["vm"]


def test_later_documents_of_a_file_with_a_recursive_alias_still_load(tmp_path: Path) -> None:
    write(tmp_path, "both.yaml", RECURSIVE_VD.lstrip() + "---\n" + VM.lstrip())
    ps = load(tmp_path)
    [finding] = ps.findings
    assert finding.code == "RecursiveAlias"
    assert [p.key.name for p in ps.policies] == ["vm"]
    assert [p.location.line for p in ps.policies] == [6]


def test_whole_pipeline_survives_a_recursive_alias(tmp_path: Path) -> None:
    """Load, translate and diff against the snapshot: nothing downstream sees the cycle."""
    repo = copy_example(tmp_path)
    write(repo, "x.yaml", RECURSIVE_VD.replace("networking.gloo.solo.io/v2", ENTERPRISE))
    plan = build_plan(repo, ClusterSource(state=STATE))
    changes = sync(plan.desired(), {}, SyncOptions())
    assert [f.code for f in plan.findings if f.is_error] == ["RecursiveAlias"]
    assert changes.counts()["created"] == 5  # the example still renders in full


def test_depth_made_of_aliases_is_refused(tmp_path: Path) -> None:
    # Each line nests the previous anchor once more: 70 short lines, 70 levels once expanded.
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 70)]
    write(tmp_path, "chain.yaml", "\n".join(lines) + "\n")
    [finding] = load(tmp_path).errors
    assert finding.code == "TooDeep"
    assert finding.location is not None and finding.location.file == "chain.yaml"
    assert finding.location.line > 0


def test_deep_brackets_are_refused_not_crashed(tmp_path: Path) -> None:
    # 900 levels is legal for libyaml (it stops at 1000) but far past Python's recursion limit for
    # every recursive walk after the parser (spec hashing, pydantic, translation).
    n = 900
    write(
        tmp_path,
        "deep.yaml",
        VM.replace("spec:\n", f"spec:\n  mtlsConfig: {{a: {'[' * n}{']' * n}}}\n"),
    )
    write(tmp_path, "deeper.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n")
    ps = load(tmp_path)
    codes = {f.location.file: f.code for f in ps.errors if f.location is not None}
    assert codes == {"deep.yaml": "TooDeep", "deeper.yaml": "MalformedYAML"}
    assert sorted(ps.unreadable_files) == ["deep.yaml", "deeper.yaml"]
    assert ObjectKey("VirtualMesh", "ns", "vm") in ps.invalid


def test_scalar_its_tag_cannot_hold_is_a_finding_at_that_scalar(tmp_path: Path) -> None:
    write(tmp_path, "date.yaml", VM.replace("spec:\n", "spec:\n  when: 2020-13-01\n"))
    write(tmp_path, "int.yaml", "a: 1\nb: !!int xx\n")
    write(tmp_path, "ts.yaml", "a: !!timestamp nope\n")
    write(tmp_path, "digits.yaml", "a: " + "9" * 5000 + "\n")
    write(tmp_path, "ok.yaml", VM.replace("name: vm,", "name: ok,").replace("m1", "m7"))
    ps = load(tmp_path)
    found = {f.location.file: f for f in ps.errors if f.location is not None}
    assert sorted(found) == ["date.yaml", "digits.yaml", "int.yaml", "ts.yaml"]
    assert all(f.code == "BadValue" for f in found.values())
    assert (
        found["date.yaml"].format().startswith("date.yaml:5:9: VirtualMesh ns/vm: cannot read value: month")
    )
    assert (found["int.yaml"].location.line, found["int.yaml"].location.column) == (2, 4)  # type: ignore[union-attr]
    assert [p.key.name for p in ps.policies] == ["ok"]


# --- unknown kinds: an error in our API groups, a warning elsewhere ----------------------------------

ENTERPRISE = "networking.enterprise.mesh.gloo.solo.io/v1beta1"


def test_typoed_kind_in_our_group_is_an_error_with_a_hint_and_held(tmp_path: Path) -> None:
    repo = copy_example(tmp_path)
    vd = repo / "bookinfo-global.yaml"
    vd.write_text(vd.read_text().replace("kind: VirtualDestination", "kind: VirtualDestinaton"))
    ps = load(repo)
    errors = [f for f in ps.errors if f.code == "UnknownKind"]
    [finding] = errors
    assert finding.format().startswith(
        "bookinfo-global.yaml:5:1: VirtualDestination gloo-mesh/bookinfo-global: kind: unknown kind "
        f"'VirtualDestinaton' (did you mean 'VirtualDestination'?) in Gloo Mesh apiVersion {ENTERPRISE}; refused"
    )
    key = ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global")
    assert key in ps.invalid
    assert "bookinfo-global.yaml" in ps.unreadable_files


def test_typoed_kind_holds_the_objects_it_produced(tmp_path: Path) -> None:
    """The typo must not delete: the live objects of the policy it meant are held, never pruned."""
    repo = copy_example(tmp_path)
    state = tmp_path / "state"
    _snapshot_with_rendered_objects(repo, state)
    vd = repo / "bookinfo-global.yaml"
    vd.write_text(vd.read_text().replace("kind: VirtualDestination", "kind: VirtualDestinaton"))
    plan = build_plan(repo, ClusterSource(state=state))
    assert ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global") in plan.desired().protected
    changes = sync(plan.desired(), {}, SyncOptions())
    actions = {(c.cluster, c.kind, c.name): c.action for c in changes.all()}
    assert Action.PRUNE not in actions.values()
    assert actions[("mgmt-cluster", "ServiceEntry", "vd-bookinfo-global-gloo-mesh")] is Action.HELD
    assert actions[("remote-cluster", "DestinationRule", "vd-bookinfo-global-gloo-mesh")] is Action.HELD


def _snapshot_with_rendered_objects(repo: Path, state: Path) -> None:
    """The bookinfo snapshot plus, as live objects, everything the example renders (as if applied)."""
    plan = build_plan(repo, ClusterSource(state=STATE))
    state.mkdir()
    for snapshot in STATE.glob("*.yaml"):
        doc = yaml.safe_load(snapshot.read_text())
        doc["items"] += [o.body for o in plan.translation.objects.get(snapshot.stem, [])]
        (state / snapshot.name).write_text(yaml.safe_dump(doc))


def test_unknown_kind_in_any_solo_io_group_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "apiVersion: networking.gloo.solo.io/v2\nkind: Gateway\nmetadata: {name: g}\n")
    write(
        tmp_path, "b.yaml", "apiVersion: solo.io/v1\nkind: virtualmesh\nmetadata: {name: m, namespace: n}\n"
    )
    write(tmp_path, "c.yaml", "apiVersion: admin.gloo.solo.io/v2\nkind: TrafficPolice\n")
    ps = load(tmp_path)
    found = {f.location.file: f for f in ps.findings if f.location is not None}
    assert sorted(found) == ["a.yaml", "b.yaml", "c.yaml"]
    assert all(f.is_error and f.code == "UnknownKind" for f in found.values())
    assert "did you mean" not in found["a.yaml"].message  # nothing close: no guess, nothing held
    assert found["a.yaml"].object == ObjectKey("Gateway", "default", "g")
    assert "(did you mean 'VirtualMesh'?)" in found["b.yaml"].message
    assert found["c.yaml"].object is None and "(did you mean 'TrafficPolicy'?)" in found["c.yaml"].message
    # Only the unambiguous guess with a name is held under the guessed identity.
    assert set(ps.invalid) == {ObjectKey("VirtualMesh", "n", "m")}
    assert sorted(ps.unreadable_files) == ["a.yaml", "b.yaml", "c.yaml"]


def test_unknown_kind_in_a_foreign_group_stays_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "apiVersion: example.com/v1\nkind: VirtualDestinaton\nmetadata: {name: a}\n")
    write(tmp_path, "b.yaml", "apiVersion: notsolo.io/v1\nkind: Thing\nmetadata: {name: b}\n")
    write(tmp_path, "c.yaml", "apiVersion: solo.io.example.com/v1\nkind: Thing\nmetadata: {name: c}\n")
    ps = load(tmp_path)
    assert ps.errors == []
    assert [f.severity for f in ps.findings] == [Severity.WARNING] * 3
    assert ps.invalid == {} and ps.unreadable_files == []


def test_guess_kind_is_unambiguous_only_when_clearly_closest() -> None:
    assert loader_mod.guess_kind("VirtualDestinaton") == ("VirtualDestination", True)
    assert loader_mod.guess_kind("trafficpolicy") == ("TrafficPolicy", True)
    assert loader_mod.guess_kind("VirtualMeshes") == ("VirtualMesh", True)
    assert loader_mod.guess_kind("Virtual") == ("VirtualMesh", False)  # VirtualMesh or VirtualDestination?
    assert loader_mod.guess_kind("ConfigMap") == (None, False)


def test_duplicate_key_inside_a_list_item_is_reported_on_that_item(tmp_path: Path) -> None:
    # Used to be dropped: the List's parse findings were not handed to its items, so YAML silently
    # kept the last `meshes` and the policy loaded as valid.
    write(
        tmp_path,
        "list.yaml",
        """
        apiVersion: v1
        kind: List
        items:
          - apiVersion: networking.mesh.gloo.solo.io/v1
            kind: VirtualMesh
            metadata: {name: vm, namespace: ns}
            spec:
              meshes: [{name: m1}]
              meshes: [{name: m2}]
        """,
    )
    ps = load(tmp_path)
    [finding] = ps.findings
    assert finding.format() == (
        "list.yaml:9:7: VirtualMesh ns/vm: spec.meshes: duplicate key 'meshes' (first at line 8); "
        "YAML keeps only the last one"
    )
    assert ps.policies == []
    assert ObjectKey("VirtualMesh", "ns", "vm") in ps.invalid
