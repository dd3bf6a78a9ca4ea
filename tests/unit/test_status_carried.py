"""A pass reads of the previous reports only what a new report carries over (``carried=True``),
from the lines we wrote; the result must equal what parsing each whole report would give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.clusters.snapshot import read_snapshot
from reconciler.findings import ObjectKey
from reconciler.policy import load_and_check
from reconciler.status import build_status, read_status_dir, status_file, write_status_dir
from reconciler.status.files import HEADER, _carried_from_lines, carried_fields
from reconciler.translate import translate
from tests.unit.helpers import EXAMPLE
from tests.unit.test_status_paths import COMMIT, LONG_NAME, STATE, _applied

SCALARS = st.one_of(
    st.integers(min_value=-5, max_value=10**6),
    st.text(alphabet="0123456789abcdefeE.+-: '\"#yesnoTrueNULL~\n", min_size=0, max_size=12),
    st.booleans(),
    st.none(),
)


def _projection(root: Path) -> dict[ObjectKey, Any]:
    return {k: carried_fields(v) for k, v in read_status_dir(root, "status").items()}


def test_the_examples_reports_read_from_their_lines(tmp_path: Path) -> None:
    policies = load_and_check(EXAMPLE)
    inventory = read_snapshot(STATE)
    translation = translate(policies, inventory, configured_clusters=inventory.clusters)
    docs = build_status(policies, translation, _applied(translation), inventory, COMMIT, {}, dry_run=False)
    assert write_status_dir(tmp_path, "status", docs, COMMIT)
    for key in docs:
        text = (tmp_path / "status" / status_file(key)).read_text()
        assert _carried_from_lines(text) == carried_fields(docs[key])  # the line reader, not the fallback
    assert read_status_dir(tmp_path, "status", carried=True) == _projection(tmp_path)
    # and the new reports built from it are the same as from the whole previous reports
    again = build_status(
        policies,
        translation,
        _applied(translation),
        inventory,
        COMMIT,
        read_status_dir(tmp_path, "status"),
        False,
    )
    carried = read_status_dir(tmp_path, "status", carried=True)
    assert (
        build_status(policies, translation, _applied(translation), inventory, COMMIT, carried, False) == again
    )


@settings(max_examples=150, deadline=None)
@given(generation=SCALARS, spec_hash=SCALARS, message=SCALARS, api=SCALARS)
def test_any_values_read_as_yaml_reads_them(
    tmp_path_factory: Any, generation: Any, spec_hash: Any, message: Any, api: Any
) -> None:
    """Quoted, typed, multi-line or odd values: the line reader gives what a YAML parse gives, or
    leaves the file to it."""
    root = tmp_path_factory.mktemp("status")
    key = ObjectKey("VirtualDestination", "gloo-mesh", "v")
    doc = {
        "apiVersion": api,
        "kind": key.kind,
        "metadata": {"name": key.name, "namespace": key.namespace},
        "status": {
            "observedGeneration": generation,
            "specHash": spec_hash,
            "conditions": [{"message": message, "observedGeneration": 7, "specHash": "inner"}],
            "state": "ACCEPTED",
        },
    }
    write_status_dir(root, "status", {key: doc}, COMMIT)
    assert read_status_dir(root, "status", carried=True) == _projection(root)


def test_a_report_not_laid_out_as_we_write_it_is_parsed_whole(tmp_path: Path) -> None:
    key = ObjectKey("VirtualDestination", "gloo-mesh", LONG_NAME)  # a hashed path: identity from the file
    path = tmp_path / "status" / status_file(key)
    path.parent.mkdir(parents=True)
    flow = (
        "{status: {specHash: abc, observedGeneration: 4}, kind: VirtualDestination, apiVersion: v1, "
        f"metadata: {{name: {LONG_NAME}, namespace: gloo-mesh}}}}\n"
    )
    for text in (
        HEADER + flow,
        flow,
        HEADER + "status:\n  specHash: abc\n  observedGeneration: 4\n" + "kind: X\n",
    ):
        path.write_text(text)
        assert _carried_from_lines(text) is None
        assert read_status_dir(tmp_path, "status", carried=True) == _projection(tmp_path)
    path.write_text(HEADER + flow)
    assert read_status_dir(tmp_path, "status", carried=True) == {
        key: {
            "apiVersion": "v1",
            "kind": "VirtualDestination",
            "metadata": {"name": LONG_NAME, "namespace": "gloo-mesh"},
            "status": {"observedGeneration": 4, "specHash": "abc"},
        }
    }
