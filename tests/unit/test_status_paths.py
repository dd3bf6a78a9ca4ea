"""Status file paths stay within file-system limits for every legal (and illegal) policy name.

A DNS-subdomain name may be 253 characters, and percent-encoding triples a non-ASCII one: written as
is, ``<name>.yaml`` exceeds the 255-byte file-name limit and every later status write fails forever.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.clusters.snapshot import read_snapshot
from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.findings import ObjectKey
from reconciler.policy import load_and_check
from reconciler.status import build_status, read_status_dir, status_file, write_status_dir
from reconciler.status.files import MAX_SEGMENT_BYTES, _unsegment
from reconciler.translate import Translation, translate
from tests.unit.helpers import copy_example, write

STATE = Path(__file__).resolve().parents[1] / "golden" / "state" / "bookinfo"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAME_LIMIT = 255  # bytes in one file name: ext4, XFS, btrfs, APFS (UTF-8), NTFS (UTF-16 units)

# A legal Kubernetes name of the maximum length: four DNS labels, 253 characters in all.
LONG_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
assert len(LONG_NAME) == 253


def _segments_fit(rel: str) -> None:
    for segment in rel.split("/"):
        assert len(segment.encode("utf-8")) <= NAME_LIMIT, (len(segment), segment)


def _doc(key: ObjectKey) -> dict[str, object]:
    return {
        "apiVersion": "networking.mesh.gloo.solo.io/v1",
        "kind": key.kind,
        "metadata": {"name": key.name, "namespace": key.namespace},
        "status": {"state": "INVALID", "observedGeneration": 1},
    }


def _applied(tr: Translation) -> ChangeSet:
    changes = ChangeSet(dry_run=False)
    for obj in tr.all_objects():
        result = changes.clusters.setdefault(obj.cluster, ClusterResult(obj.cluster))
        result.changes.append(
            ObjectChange(obj.cluster, obj.kind, obj.namespace, obj.name, Action.UNCHANGED, obj.sources)
        )
    return changes


def test_short_names_keep_todays_paths() -> None:
    # Existing repositories must not churn: names that fit are encoded exactly as before.
    assert status_file(ObjectKey("VirtualDestination", "gloo-mesh", "bookinfo-global")) == (
        "VirtualDestination/gloo-mesh/bookinfo-global.yaml"
    )
    assert status_file(ObjectKey("VirtualMesh", "ns", "a/b é")) == "VirtualMesh/ns/a%2Fb%20%C3%A9.yaml"
    fits = "x" * MAX_SEGMENT_BYTES
    assert status_file(ObjectKey("VirtualMesh", "ns", fits)) == f"VirtualMesh/ns/{fits}.yaml"


def test_253_character_name_gets_a_bounded_readable_path(tmp_path: Path) -> None:
    key = ObjectKey("VirtualDestination", "gloo-mesh", LONG_NAME)
    rel = status_file(key)
    _segments_fit(rel)
    assert rel.startswith("VirtualDestination/gloo-mesh/" + "a" * 63 + ".")  # still readable
    assert write_status_dir(tmp_path, "status", {key: _doc(key)}, COMMIT)
    assert (tmp_path / "status" / rel).is_file()
    assert set(read_status_dir(tmp_path, "status")) == {key}


def test_multibyte_name_is_bounded_after_percent_encoding(tmp_path: Path) -> None:
    # Not a legal Kubernetes name, but invalid policies get reports too (their names come from the
    # file as written); 253 × "é" percent-encodes to 1518 bytes.
    key = ObjectKey("VirtualMesh", "ns-" + "ü" * 100, "é" * 253)
    rel = status_file(key)
    _segments_fit(rel)
    assert "%" in rel and not rel.split("/")[2].startswith("+")  # a readable prefix is kept
    assert write_status_dir(tmp_path, "status", {key: _doc(key)}, COMMIT)
    assert set(read_status_dir(tmp_path, "status")) == {key}


def test_truncation_never_splits_a_percent_escape() -> None:
    for pad in range(4):
        rel = status_file(ObjectKey("VirtualMesh", "ns", "x" * pad + "é" * 200))
        prefix = rel.split("/")[2].split("+")[0]
        assert "%" not in prefix[-2:], prefix[-3:]


def test_long_names_sharing_a_prefix_get_distinct_files(tmp_path: Path) -> None:
    # 253 characters each, the same first 240: the readable prefixes are equal, the hashes are not.
    common = "p" * 240
    one = ObjectKey("VirtualDestination", "gloo-mesh", common + "-" + "1" * 12)
    two = ObjectKey("VirtualDestination", "gloo-mesh", common + "-" + "2" * 12)
    assert status_file(one).split("+")[0] == status_file(two).split("+")[0]
    assert status_file(one) != status_file(two)
    docs = {one: _doc(one), two: _doc(two)}
    assert write_status_dir(tmp_path, "status", docs, COMMIT)
    assert len(list((tmp_path / "status" / "VirtualDestination" / "gloo-mesh").iterdir())) == 2
    assert read_status_dir(tmp_path, "status") == docs


def test_lone_surrogate_in_a_name_still_has_a_path() -> None:
    # libyaml refuses "\ud800" escapes, PyYAML's pure-Python loader (the fallback) does not: the name
    # of an invalid policy may then hold one, and strict UTF-8 encoding would raise.
    name = "bad\ud800name"
    rel = status_file(ObjectKey("VirtualMesh", "ns", name))
    assert _unsegment(rel.split("/")[2].removesuffix(".yaml")) == name


def test_hashed_report_whose_content_disagrees_with_its_path_is_not_ours(tmp_path: Path) -> None:
    key = ObjectKey("VirtualDestination", "gloo-mesh", LONG_NAME)
    write_status_dir(tmp_path, "status", {key: _doc(key)}, COMMIT)
    path = tmp_path / "status" / status_file(key)
    path.write_text(path.read_text().replace("a" * 63, "z" * 63))
    assert read_status_dir(tmp_path, "status") == {}
    # ... and the next write replaces it rather than keeping a stray file.
    assert write_status_dir(tmp_path, "status", {key: _doc(key)}, COMMIT)
    assert set(read_status_dir(tmp_path, "status")) == {key}


def test_long_named_policy_round_trip_and_removal(tmp_path: Path) -> None:
    """write -> read -> rebuild -> rewrite changes nothing; deleting the policy removes its report."""
    repo = copy_example(tmp_path)
    write(
        repo,
        "long.yaml",
        f"""
        apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
        kind: VirtualDestination
        metadata:
          name: {LONG_NAME}
          namespace: gloo-mesh
        spec:
          hostname: long.global
          port: {{number: 9080}}
          virtualMesh: {{name: virtual-mesh, namespace: gloo-mesh}}
          localized:
            destinationSelectors:
              - kubeServiceMatcher: {{labels: {{app: reviews}}}}
        """,
    )
    inventory = read_snapshot(STATE)
    policies = load_and_check(repo)
    key = ObjectKey("VirtualDestination", "gloo-mesh", LONG_NAME)
    assert policies.get(key) is not None, [f.format() for f in policies.findings]
    tr = translate(policies, inventory)
    docs = build_status(policies, tr, _applied(tr), inventory, COMMIT, {}, False)
    assert write_status_dir(repo, "status", docs, COMMIT) is True
    for path in (repo / "status").rglob("*"):
        _segments_fit(path.relative_to(repo / "status").as_posix())

    previous = read_status_dir(repo, "status")
    assert previous == docs
    again = build_status(policies, tr, _applied(tr), inventory, COMMIT, previous, False)
    assert again == docs  # observedGeneration did not move: the report was found again
    assert write_status_dir(repo, "status", again, COMMIT) is False

    (repo / "long.yaml").unlink()
    policies = load_and_check(repo)
    tr = translate(policies, inventory)
    docs = build_status(policies, tr, _applied(tr), inventory, COMMIT, read_status_dir(repo, "status"), False)
    assert key not in docs
    assert write_status_dir(repo, "status", docs, COMMIT) is True
    assert not (repo / "status" / status_file(key)).exists()
    assert key not in read_status_dir(repo, "status")
