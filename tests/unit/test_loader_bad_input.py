"""Bad input the loader must survive: clear message, no traceback, nothing else lost."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.findings import ObjectKey, Severity
from reconciler.policy import loader as loader_mod
from tests.unit.helpers import copy_example, load, write

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
