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

ODD = "0123456789abcdefeE.+-: '\"#yesnoTrueNULL~\n\t\u2028\u2029\x85é|>&*!%@`[]{},?"
SCALARS = st.one_of(
    st.integers(min_value=-5, max_value=10**6),
    st.text(alphabet=ODD, min_size=0, max_size=12),
    st.text(alphabet=ODD, min_size=80, max_size=160),  # folded over lines at width 100
    st.booleans(),
    st.none(),
)
NAMES = st.one_of(
    st.text(alphabet=ODD, min_size=1, max_size=12), st.text(alphabet=ODD, min_size=80, max_size=160)
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


@settings(max_examples=300, deadline=None)
@given(generation=SCALARS, spec_hash=SCALARS, message=SCALARS, api=SCALARS, name=NAMES, kind=NAMES)
def test_any_values_read_as_yaml_reads_them(
    tmp_path_factory: Any, generation: Any, spec_hash: Any, message: Any, api: Any, name: str, kind: str
) -> None:
    """Quoted, typed, multi-line, folded or odd values (an invalid policy's report names whatever its
    file said): the line reader gives what a YAML parse gives, or leaves the file to it."""
    root = tmp_path_factory.mktemp("status")
    key = ObjectKey(kind, "gloo-mesh", name)
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


BASE = (
    HEADER + "apiVersion: v1\nkind: K\nmetadata:\n  name: n\n  namespace: ns\nstatus:\n"
    "  observedGeneration: 3\n  specHash: h\n"
)


def test_layouts_we_never_write_are_left_to_the_whole_parse() -> None:
    """Hand-edited files (found by review): each either reads as the whole parse reads it, or not
    at all — never as something else."""
    from reconciler.yamlio import load

    assert _carried_from_lines(BASE) == carried_fields(load(BASE))
    variants = [
        BASE.replace("status:\n  observedGeneration: 3\n  specHash: h\n", "status:\n"),
        BASE.replace("metadata:\n  name: n\n  namespace: ns\n", "metadata:\n"),
        BASE.replace(
            "  observedGeneration: 3\n  specHash: h\n", "    observedGeneration: 3\n    specHash: h\n"
        ),
        BASE.replace("  specHash: h", '  "specHash": h'),
        BASE.replace("  specHash: h", "  specHash:\th"),
        BASE.replace("  specHash: h", "  specHash : h"),
        BASE + "  'specHash': other\n",
        BASE + "  \n    more\n",
        BASE.replace("  specHash: h\n", "  specHash: |\n  \n    abc\n"),
        BASE.replace("  specHash: h", "  specHash: --- h"),
        BASE.replace("  specHash: h", "  specHash: - h"),
        BASE.replace(
            "status:\n  observedGeneration: 3\n  specHash: h\n", "status:\n- observedGeneration: 3\n"
        ),
        BASE.replace("status:\n  observedGeneration: 3\n  specHash: h\n", "status:\n  just text\n"),
        BASE.replace("  namespace: ns", "  namespace: *x").replace("  name: n", "  name: &x n"),
        BASE + "  extra: \x07\n",
        BASE + "---\nkind: other\n",
        BASE + "# a comment\n",
    ]
    for text in variants:
        line_read = _carried_from_lines(text)
        try:
            whole = carried_fields(load(text))
        except Exception:  # the whole parse refuses it: the pass skips the file
            whole = None
        assert line_read is None or line_read == whole, text
