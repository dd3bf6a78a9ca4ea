"""YAML out: the direct node builder writes exactly what PyYAML's representer would.

Status files live in users' repositories: one changed byte in how a report is written is a commit
in every repository at the next pass. So the fast path is compared, byte for byte, with plain
PyYAML (libyaml's dumper with our one representer, the memo-free resolver) on generated data full
of strings that need quoting, folding or a block style, and on the shapes it hands over.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import yamlio

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class PlainDumper(_Base):  # type: ignore[misc,valid-type]
    """What yamlio wrote before the fast path: no memo, the representer for every value."""


PlainDumper.add_representer(str, yamlio._str_representer)


def plain(data: Any) -> str:
    return str(yaml.dump(data, Dumper=PlainDumper, **yamlio._FORMAT))


def plain_stream(docs: list[Any]) -> str:
    return str(yaml.dump_all(docs, Dumper=PlainDumper, explicit_start=True, **yamlio._FORMAT))


TRICKY = [
    "",
    " ",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "true",
    "007",
    "1.0",
    "1e3",
    "0x1F",
    ".inf",
    "2020-01-01",
    "-",
    "- a",
    "a: b",
    "#x",
    "x #y",
    "'q'",
    '"dq"',
    "tab\there",
    "trail ",
    " lead",
    "*alias",
    "&anchor",
    "!tag",
    "%x",
    "@x",
    "`x",
    "{a}",
    "[a]",
    "a,b",
    "line 1\nline 2",
    "ends\n",
    "\n",
    "ünïcödé",
    "日本",
    "emoji 🚀",
    "\x07bell",
    "x " * 70,
    "long-" * 30,
    "<<",
    "=",
]
strings = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), strings)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(strings, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(strings, values, max_size=6))
def test_fast_path_writes_what_pyyaml_writes(doc: dict[str, Any]) -> None:
    assert yamlio.to_yaml(doc) == plain(doc)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(strings, values, max_size=4), max_size=4))
def test_stream_writes_what_pyyaml_writes(docs: list[dict[str, Any]]) -> None:
    assert yamlio.to_yaml_stream(docs) == plain_stream(docs)


def test_shapes_the_builder_hands_over_are_written_by_pyyaml_unchanged() -> None:
    shared = {"k": "v"}
    cases: list[Any] = [
        {"f": 1.5, "g": float("inf"), "h": 1e17},  # floats: PyYAML's own formatting
        {"a": shared, "b": shared},  # one dict twice: PyYAML writes an anchor and an alias
        {"n": {2: "x"}},  # a non-string key
        {"l": [shared, shared]},
    ]
    for case in cases:
        assert yamlio.to_yaml(case) == plain(case)
    assert "&id001" in yamlio.to_yaml({"a": shared, "b": shared})
    assert yamlio.to_yaml_stream([{"x": 1.5}, {"y": 2}]) == plain_stream([{"x": 1.5}, {"y": 2}])


def test_loader_memo_gives_the_tags_of_the_plain_loader() -> None:
    text = "\n".join(f"k{i}: {v}" for i, v in enumerate(["1", "yes", "x", "~", "1.5", "2020-01-01", "'7'"]))
    for _ in range(2):  # the second load answers from the memo
        assert yaml.load(text, Loader=yamlio.SafeLoader) == yaml.safe_load(text)
