"""Property: random mutations of the example policies never crash the loader.

Every mutated file yields either valid policies or findings located in that very file, each with a
file and a line; a file left with no documents at all (e.g. everything commented out) needs neither.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.policy import load_and_check

EXAMPLE = Path(__file__).resolve().parents[2] / "policies"
DOCS = {
    p.name: yaml.safe_load(p.read_text())
    for p in sorted(EXAMPLE.glob("*.yaml"))
    if p.name != "reconciler.yaml"
}
TEXTS = {p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.yaml")) if p.name != "reconciler.yaml"}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["5s", "1m30s", "-1s", "HTTP", "tcp", "us-east-1", "", "0", "*"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


@st.composite
def structural_mutation(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
        else:
            parent.append(draw(values))
    return name, yaml.safe_dump(doc, sort_keys=draw(st.booleans()))


@st.composite
def textual_mutation(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[name]
    for _ in range(draw(st.integers(1, 3))):
        if not text:
            break
        pos = draw(st.integers(0, len(text) - 1))
        op = draw(st.sampled_from(["delete", "insert", "dup-line"]))
        if op == "delete":
            text = text[:pos] + text[pos + 1 :]
        elif op == "insert":
            text = (
                text[:pos]
                + draw(st.sampled_from([":", "-", " ", "\n", "[", "{", "&a", "*a", "'", "\t", "#"]))
                + text[pos:]
            )
        else:
            lines = text.splitlines(keepends=True)
            i = min(pos % max(len(lines), 1), len(lines) - 1)
            lines.insert(i, lines[i])
            text = "".join(lines)
    return name, text


_NULL_TAG = "tag:yaml.org,2002:null"


def _holds_documents(text: str) -> bool:
    """Whether the text has any non-empty YAML document (an unparseable one counts: it must be reported)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError:
        return True
    return any(not (isinstance(n, yaml.ScalarNode) and n.tag == _NULL_TAG) for n in nodes)


def _check(name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for other, original in TEXTS.items():
            (root / other).write_text(original)
        (root / name).write_text(text)
        result = load_and_check(root)  # must not raise
        for finding in result.findings:
            assert finding.location is not None, finding
            assert finding.location.file, finding
            assert finding.location.line > 0, finding
        # Either the mutated file still holds a valid policy, or a finding IN THAT FILE says why not.
        # (A finding anywhere else does not explain it: the untouched files may have findings of their
        # own, e.g. a reference to the policy that just broke, and counting those would let a silently
        # dropped document pass.)
        mutated_ok = any(p.location.file == name for p in result.policies)
        explained = any(f.location is not None and f.location.file == name for f in result.findings)
        assert mutated_ok or explained or not _holds_documents(text), (
            f"{name} lost its policy without a finding in it:\n{text}\n"
            + "\n".join(f.format() for f in result.findings)
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structural_mutation())
def test_structural_mutations_never_crash(case: tuple[str, str]) -> None:
    _check(*case)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(textual_mutation())
def test_textual_mutations_never_crash(case: tuple[str, str]) -> None:
    _check(*case)
