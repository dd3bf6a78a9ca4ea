"""The loader's one-pass fast path gives exactly what the full path (checks + PyYAML) gives.

The fast path (:func:`loader._build_tree`) exists only for speed; if it ever disagreed with the
full path about data, positions or duplicate keys, error locations or spec hashes would silently
change. Each case runs both on the same composed node and compares; the cases it must hand over
(return None) are listed too, so a fast path that silently declined everything would fail here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.policy import loader
from reconciler.yamlio import SafeLoader

ROOT = Path(__file__).resolve().parents[2]


def _composes(path: Path) -> bool:
    try:
        list(yaml.compose_all(path.read_text(), Loader=SafeLoader))
    except yaml.YAMLError:
        return False  # a deliberately broken file: nothing to compare
    return "&" not in path.read_text()


REPO_YAML = sorted(
    p for d in ("policies", "repo-layout", "tests/golden") for p in (ROOT / d).rglob("*.y*ml") if _composes(p)
)

EDGE_CASES = {
    "scalars": "a: 1\nb: 1.5\nc: true\nd: ~\ne: 2020-01-02\nf: '007'\ng: 0x1F\nh: .inf\n",
    "duplicate keys": "a: 1\nb:\n  x: 1\n  x: 2\na: 3\nc: [1, {y: 1, y: 2}]\n",
    "nested lists": "- [1, [2, [3, {k: v}]]]\n- {}\n- []\n",
    "quoted merge key": "'<<': 1\n'<<': 2\n",
    "empty values": "a:\nb: ''\nc: []\n",
    "binary": "a: !!binary aGVsbG8=\n",
    "multiline": "a: |\n  line 1\n  line 2\nb: >\n  folded\n  text\n",
}

DECLINED = {
    "integer key": "1: one\n",
    "merge key": "base: {a: 1}\nchild:\n  <<: {b: 2}\n",
    "set": "!!set {a, b}\n",
    "omap": "!!omap [{a: 1}]\n",
    "bad timestamp": "a: 2020-13-01\n",
    "unknown tag": "a: !custom x\n",
    "complex key": "? [a, b]\n: 1\n",
    "too deep": "a: " + "[" * (loader.MAX_DOCUMENT_DEPTH + 1) + "]" * (loader.MAX_DOCUMENT_DEPTH + 1) + "\n",
}


def _nodes(text: str) -> list[tuple[yaml.SafeLoader, yaml.Node]]:
    ld = SafeLoader(text)
    out = []
    while ld.check_node():
        node = ld.get_node()
        if node is not None:
            out.append((ld, node))
    return out


def _full_path(ld: yaml.SafeLoader, node: yaml.Node) -> tuple[Any, loader.Positions, list[Any]]:
    assert loader._refuse_shape(node, "f.yaml") is None
    positions: loader.Positions = {}
    findings: list[Any] = []
    loader._record_positions(node, (), positions, findings, "f.yaml", set())
    data, refusal = loader._construct(ld, node, "f.yaml")
    assert refusal is None
    return data, positions, findings


def _assert_same(text: str) -> None:
    for ld, node in _nodes(text):
        fast = loader._build_tree(ld, node, "f.yaml")
        assert fast is not None, text
        data, positions, findings = fast
        want_data, want_positions, want_findings = _full_path(ld, node)
        assert data == want_data
        assert list(_keys(data)) == list(_keys(want_data))  # same key order, not just equal
        assert positions == want_positions
        assert findings == want_findings
        spec = data.get("spec") if isinstance(data, dict) else data
        assert loader.spec_hash(spec, plain_keys=True) == loader.spec_hash(spec)


def _keys(value: Any) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


@pytest.mark.parametrize("path", REPO_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_fast_path_equals_full_path_on_repository_files(path: Path) -> None:
    _assert_same(path.read_text())


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_fast_path_equals_full_path_on_edge_cases(name: str) -> None:
    _assert_same(EDGE_CASES[name])


@pytest.mark.parametrize("name", sorted(DECLINED))
def test_fast_path_hands_over_what_it_does_not_handle(name: str) -> None:
    [(ld, node)] = _nodes(DECLINED[name])
    assert loader._build_tree(ld, node, "f.yaml") is None


def test_a_file_with_an_anchor_takes_the_full_path_and_still_loads() -> None:
    text = "a: &x {k: v}\nb: *x\nc: {k: v, k: w}\n"
    [doc], problem = loader._parse_documents(text, "f.yaml")
    assert problem is None and not doc.plain_keys
    assert doc.data == {"a": {"k": "v"}, "b": {"k": "v"}, "c": {"k": "w"}}
    assert [f.code for f in doc.findings] == ["DuplicateKey"]


keys = st.text(alphabet="abcxyz<-_ ", min_size=1, max_size=4)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=6), st.floats(allow_nan=False)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(values, st.booleans(), st.integers(0, 2))
def test_fast_path_equals_full_path_on_generated_documents(value: Any, flow: bool, dup: int) -> None:
    text = yaml.safe_dump({"spec": value}, default_flow_style=flow and not dup)
    if dup:  # a repeated top-level key, as a hand-edited file may have
        text += yaml.safe_dump({"spec": dup}, default_flow_style=False)
    _assert_same(text)
