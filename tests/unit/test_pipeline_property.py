"""Property: no policy repository, however hostile, crashes a run, and every breakage is reported where it is.

Hypothesis builds repositories from the bundled example (``policies/``) and a catalogue of damage —
typoed keys and kinds, wrong types, lists for maps, recursive aliases, alias bombs, deep nesting,
duplicate objects, non-UTF-8 and NUL bytes, empty documents, huge names, random edits and random
values — then runs
what ``reconciler diff --state`` runs: load and check, translate against the bookinfo snapshot, diff
against it, and build, write and re-read the status reports. It asserts:

* nothing raises;
* every finding says which file (and, for a problem inside a parsed document, which line);
* every file broken on purpose has an error *located in that file* (a finding anywhere else does
  not explain it: that is how a test ends up unable to fail for the reason it names);
* the exit codes ``validate`` and ``diff`` would give agree with the findings;
* the real CLI, on some of these repositories, prints no traceback and exits with those codes.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from reconciler.commands.app import app
from reconciler.engine.changeset import ChangeSet
from reconciler.engine.sync import SyncOptions, sync
from reconciler.errors import ExitCode
from reconciler.findings import Finding
from reconciler.plan import ClusterSource, Plan, build_plan
from reconciler.policy.model import POLICY_KINDS
from reconciler.status import build_status, read_status_dir, write_status_dir

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "bookinfo"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

TEXTS = {p.name: p.read_text() for p in sorted(EXAMPLE.glob("*.yaml")) if p.name != "reconciler.yaml"}
DOCS = {name: yaml.safe_load(text) for name, text in TEXTS.items()}

FREE_FORM = frozenset({"labels", "annotations", "mtlsConfig", "federation", "subset"})
"""Keys whose content is free-form (maps of anything): a key or type changed inside is not an error."""

# Findings about a file that was never parsed carry no line; every other finding must have one.
_UNPARSED_CODES = frozenset({"Binary", "IO", "SymlinkEscape", "InvalidConfig"})


def _model_fields(model: type[BaseModel], out: set[str]) -> set[str]:
    for name, info in model.model_fields.items():
        out.update({name, info.alias or name})
        choices = getattr(info.validation_alias, "choices", None) or ()
        out.update(c for c in choices if isinstance(c, str))
        stack = [info.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel) and ann.__name__ not in out:
                out.add(ann.__name__)  # visited marker (no field is named like a class)
                _model_fields(ann, out)
            stack.extend(getattr(ann, "__args__", ()) or ())
    return out


KNOWN_KEYS = frozenset(k for m in POLICY_KINDS.values() for k in _model_fields(m, set()))
"""Every field name some policy model accepts somewhere: a typo must not land on one of them."""


# --------------------------------------------------------------------------------------------------
# what a generated file is


@dataclass(frozen=True)
class GenFile:
    data: bytes
    what: str
    broken: bool = False
    """Broken on purpose: an error finding must be located in this very file."""
    clean: bool = False
    """Holds nothing (empty documents): no finding may be located in it."""
    dup_source: bool = False
    """A copy of it is certainly reported (a duplicate object, or the same breakage again)."""


def _dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths to every value, except values inside free-form maps."""
    if prefix and prefix[-1] in FREE_FORM:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _typo(draw: st.DrawFn, word: str) -> str:
    """A realistic typo: a letter dropped, doubled or two letters swapped (never the word itself)."""
    i = draw(st.integers(0, max(len(word) - 1, 0)))
    op = draw(st.sampled_from(["drop", "double", "swap", "case"]))
    if op == "drop" and len(word) > 1:
        out = word[:i] + word[i + 1 :]
    elif op == "swap" and i + 1 < len(word) and word[i] != word[i + 1]:
        out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    elif op == "case" and word[i].isalpha():
        out = word[:i] + word[i].swapcase() + word[i + 1 :]
    else:
        out = word[:i] + word[i] + word[i:]
    return out if out != word else word + "x"


# --------------------------------------------------------------------------------------------------
# the catalogue


@st.composite
def valid_example(draw: st.DrawFn) -> GenFile:
    name = draw(st.sampled_from(sorted(TEXTS)))
    return GenFile(TEXTS[name].encode(), f"example {name}", dup_source=True)


@st.composite
def typoed_key(draw: st.DrawFn) -> GenFile:
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    keys = [p for p in _paths(doc) if isinstance(p[-1], str)]
    path = draw(st.sampled_from(keys))
    new = _typo(draw, path[-1])
    parent = _parent(doc, path)
    if new in KNOWN_KEYS or new in parent:
        new = path[-1] + "Typo"
    parent[new] = parent.pop(path[-1])
    return GenFile(_dump(doc), f"{name}: key {'.'.join(map(str, path))} -> {new!r}", broken=True)


@st.composite
def wrong_type(draw: st.DrawFn) -> GenFile:
    """A map where a list belongs, a list where a map belongs, a collection where a scalar belongs."""
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    path = draw(st.sampled_from(list(_paths(doc))))
    parent = _parent(doc, path)
    old = parent[path[-1]]
    if isinstance(old, dict):
        new: Any = list(old.values()) or [1]
    elif isinstance(old, list):
        new = {"items": old} if draw(st.booleans()) else {}
    else:
        new = draw(st.sampled_from([[old], {"value": old}, {}, []]))
    parent[path[-1]] = new
    return GenFile(_dump(doc), f"{name}: {'.'.join(map(str, path))} {old!r} -> {new!r}", broken=True)


@st.composite
def typoed_kind(draw: st.DrawFn) -> GenFile:
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    doc["kind"] = _typo(draw, doc["kind"])
    return GenFile(_dump(doc), f"{name}: kind -> {doc['kind']!r}", broken=True, dup_source=True)


@st.composite
def recursive_alias(draw: st.DrawFn) -> GenFile:
    """An anchor on a block collection and an alias to it inside that collection."""
    name = draw(st.sampled_from(sorted(TEXTS)))
    lines = TEXTS[name].splitlines()
    spots = [
        i
        for i in range(len(lines) - 1)
        if lines[i].rstrip().endswith(":")
        and not lines[i].lstrip().startswith("#")
        and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > len(lines[i]) - len(lines[i].lstrip())
    ]
    i = draw(st.sampled_from(spots))
    child = lines[i + 1]
    indent = child[: len(child) - len(child.lstrip())]
    loop = f"{indent}- *loop" if child.lstrip().startswith("- ") else f"{indent}loop: *loop"
    lines[i] = lines[i].rstrip() + " &loop"
    lines.insert(i + 1, loop)  # first child: it can never split a multi-line item
    return GenFile(
        ("\n".join(lines) + "\n").encode(), f"{name}: recursive alias at line {i + 1}", broken=True
    )


@st.composite
def hostile_yaml(draw: st.DrawFn) -> GenFile:
    """Documents that are not policies at all, each certainly an error."""
    kind = draw(st.sampled_from(["bomb", "deep", "alias-chain", "list", "scalar", "bad-scalar", "syntax"]))
    if kind == "bomb":
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        text = "\n".join(lines)
    elif kind == "deep":
        n = draw(st.integers(65, 1200))
        text = "a: " + "[" * n + "]" * n
    elif kind == "alias-chain":
        n = draw(st.integers(65, 120))
        text = "\n".join(["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, n)])
    elif kind == "list":
        text = "- apiVersion: v1\n- kind: VirtualMesh"
    elif kind == "scalar":
        text = draw(st.sampled_from(["just text", "42", "true", "'quoted'"]))
    elif kind == "bad-scalar":
        text = draw(
            st.sampled_from(["a: 2020-13-01", "a: !!int xx", "a: !!timestamp no", "a: " + "9" * 5000])
        )
    else:
        text = draw(st.sampled_from(["kind: [", "a: b: c", "{", "a:\n\t- b", "%YAML 9.9\n---\na: 1"]))
    return GenFile((text + "\n").encode(), f"hostile {kind}", broken=True, dup_source=True)


@st.composite
def undecodable(draw: st.DrawFn) -> GenFile:
    name = draw(st.sampled_from(sorted(TEXTS)))
    data = bytearray(TEXTS[name].encode())
    pos = draw(st.integers(0, len(data) - 1))
    data[pos : pos + 1] = draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\x00", b"caf\xe9"]))
    return GenFile(bytes(data), f"{name}: bad bytes at {pos}", broken=True, dup_source=True)


@st.composite
def empty(draw: st.DrawFn) -> GenFile:
    text = draw(st.sampled_from(["", "\n", "---\n", "---\n---\n...\n", "# only a comment\n", "--- # c\n"]))
    return GenFile(text.encode(), f"empty {text!r}", clean=True)


@st.composite
def huge_name(draw: st.DrawFn) -> GenFile:
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    length = draw(st.integers(254, 2000))
    doc["metadata"]["name"] = draw(st.sampled_from(["a", "é", "-"])) * length
    return GenFile(_dump(doc), f"{name}: name of {length} characters", broken=True, dup_source=True)


@st.composite
def long_legal_name(draw: st.DrawFn) -> GenFile:
    """253 characters is legal: must load (or fail only on cross-object rules), and its status fit."""
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    doc["metadata"]["name"] = ".".join(["a" * 63, "b" * 63, "c" * 63, draw(st.sampled_from("dex")) * 61])
    return GenFile(_dump(doc), f"{name}: legal 253-character name")


@st.composite
def foreign_object(draw: st.DrawFn) -> GenFile:
    kind = draw(st.sampled_from(["ConfigMap", "VirtualDestinaton", "Deployment"]))
    text = f"apiVersion: {draw(st.sampled_from(['v1', 'apps/v1', 'example.com/v1']))}\nkind: {kind}\n"
    return GenFile((text + "metadata: {name: x}\n").encode(), f"foreign {kind}")


@st.composite
def random_edit(draw: st.DrawFn) -> GenFile:
    """Characters deleted or inserted anywhere: may or may not still be valid (nothing asserted)."""
    name = draw(st.sampled_from(sorted(TEXTS)))
    text = TEXTS[name]
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(text) - 1))
        if draw(st.booleans()):
            text = text[:pos] + text[pos + 1 :]
        else:
            insert = draw(st.sampled_from([":", "-", " ", "\n", "[", "{", "&a ", "*a", "'", "\t", "#", "é"]))
            text = text[:pos] + insert + text[pos:]
    return GenFile(text.encode(), f"{name}: random edit")


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(
        ["5s", "-1s", "0s", "tcp", "us-east-1", "us-east-1/a", "", "*", "mgmt-cluster", "a" * 300]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def random_values(draw: st.DrawFn) -> GenFile:
    """Any value replaced by anything (free-form maps included): valid or not, nothing may crash."""
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    for _ in range(draw(st.integers(1, 3))):
        everywhere = [p for p in _all_paths(doc) if p]
        path = draw(st.sampled_from(everywhere))
        _parent(doc, path)[path[-1]] = draw(VALUES)
    return GenFile(_dump(doc), f"{name}: random values")


def _all_paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _all_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _all_paths(v, (*prefix, i))


def _as_list(files: list[GenFile]) -> GenFile:
    """Several parsed documents as the items of one ``kind: List`` (as ``kubectl get -o yaml`` writes)."""
    items = [yaml.safe_load(f.data) for f in files]
    return GenFile(
        _dump({"apiVersion": "v1", "kind": "List", "items": items}),
        "List of " + "; ".join(f.what for f in files),
        broken=any(f.broken for f in files),
    )


def _multi(files: list[GenFile]) -> GenFile:
    return GenFile(
        b"---\n".join(f.data if f.data.endswith(b"\n") or not f.data else f.data + b"\n" for f in files),
        "documents: " + "; ".join(f.what for f in files),
        broken=any(f.broken for f in files),
        clean=all(f.clean for f in files),
        dup_source=any(f.dup_source for f in files),
    )


TEXT_FILES = st.one_of(
    valid_example(),
    typoed_key(),
    wrong_type(),
    typoed_kind(),
    recursive_alias(),
    hostile_yaml(),
    empty(),
    huge_name(),
    long_legal_name(),
    foreign_object(),
    random_edit(),
    random_values(),
)
LISTABLE = st.one_of(valid_example(), typoed_key(), wrong_type(), typoed_kind(), huge_name())


@st.composite
def repo_file(draw: st.DrawFn) -> GenFile:
    shape = draw(st.sampled_from(["one", "one", "one", "multi", "list", "bytes"]))
    if shape == "multi":
        return _multi(draw(st.lists(TEXT_FILES, min_size=2, max_size=3)))
    if shape == "list":
        return _as_list(draw(st.lists(LISTABLE, min_size=1, max_size=2)))
    if shape == "bytes":
        return draw(undecodable())
    return draw(TEXT_FILES)


@st.composite
def repositories(draw: st.DrawFn) -> dict[str, GenFile]:
    files: dict[str, GenFile] = {}
    for i, f in enumerate(draw(st.lists(repo_file(), min_size=1, max_size=6))):
        where = draw(st.sampled_from(["", "team-a/", "team-b/deep/"]))
        files[f"{where}f{i}.{draw(st.sampled_from(['yaml', 'yml']))}"] = f
    sources = [p for p, f in files.items() if f.dup_source]
    if sources and draw(st.booleans()):
        source = draw(st.sampled_from(sources))
        original = files[source]
        # A byte-for-byte copy: the same object twice (both reported), or the same damage again.
        files["copies/dup.yaml"] = GenFile(original.data, f"copy of {source}", broken=True)
    return files


# --------------------------------------------------------------------------------------------------
# running the pipeline and checking the findings


@dataclass
class Outcome:
    plan: Plan
    changes: ChangeSet
    validate_exit: int
    diff_exit: int


@contextmanager
def _repo(files: dict[str, GenFile]) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="pipeline-"))
    try:
        root = tmp / "repo"
        for rel, f in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f.data)
        root.mkdir(exist_ok=True)
        yield root
    finally:
        shutil.rmtree(tmp)


def run_pipeline(root: Path) -> Outcome:
    """What `reconciler diff --state` does, and the exit codes `validate` and `diff` derive from it."""
    plan = build_plan(root, ClusterSource(state=STATE))
    changes = sync(plan.desired(), {}, SyncOptions())
    # reconciler/commands: validate -> 1 iff an error among config + policy findings; diff -> 2 iff an
    # error among all findings (translation included), an unreachable cluster or a failed change.
    validate_errors = any(f.is_error for f in plan.config_findings + plan.policies.findings)
    diff_errors = any(f.is_error for f in plan.findings) or changes.has_errors
    return Outcome(
        plan,
        changes,
        validate_exit=ExitCode.DEGRADED if validate_errors else ExitCode.OK,
        diff_exit=ExitCode.FATAL
        if diff_errors
        else ExitCode.DEGRADED
        if changes.has_differences
        else ExitCode.OK,
    )


def _describe(files: dict[str, GenFile], findings: list[Finding]) -> str:
    lines = [f"  {p}: {f.what}" for p, f in files.items()]
    lines += [f"  finding: {f.format()}" for f in findings]
    return "\n" + "\n".join(lines)


def check_findings(files: dict[str, GenFile], findings: list[Finding]) -> None:
    context = _describe(files, findings)
    for f in findings:
        assert f.location is not None and f.location.file, "finding without a file" + context
        parsed = f.code not in _UNPARSED_CODES and not (
            f.code == "TooLarge" and f.message.startswith("file is")
        )
        if parsed:
            assert f.location.line > 0, f"finding inside a document without a line: {f.format()}" + context
        for rel in f.related:
            assert rel.file, "related location without a file" + context
    for path, gen in files.items():
        here = [f for f in findings if f.location is not None and f.location.file == path]
        if gen.broken:
            assert any(f.is_error for f in here), (
                f"{path} was broken on purpose but has no error in it" + context
            )
        if gen.clean:
            assert here == [], f"{path} holds nothing but has findings" + context


def check_status_round_trip(plan: Plan, changes: ChangeSet, out: Path) -> None:
    """Reports of whatever loaded are written, read back, and rewritten without a change."""
    docs = build_status(plan.policies, plan.translation, changes, plan.inventory, COMMIT, {}, False)
    write_status_dir(out, "status", docs, COMMIT)
    previous = read_status_dir(out, "status")
    assert set(previous) == set(docs)
    again = build_status(plan.policies, plan.translation, changes, plan.inventory, COMMIT, previous, False)
    assert again == docs
    assert write_status_dir(out, "status", again, COMMIT) is False


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(repositories())
def test_hostile_repositories_never_crash_and_every_breakage_is_reported_in_its_file(
    files: dict[str, GenFile],
) -> None:
    with _repo(files) as root:
        outcome = run_pipeline(root)
        plan = outcome.plan
        try:
            check_findings(files, plan.findings)
            if any(f.broken for f in files.values()):
                assert outcome.validate_exit == ExitCode.DEGRADED
                assert outcome.diff_exit == ExitCode.FATAL
            check_status_round_trip(plan, outcome.changes, root.parent / "out")
        finally:
            plan.close()


RUNNER_ENV = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=RUNNER_ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.stdout, result.stderr


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(repositories())
def test_cli_on_hostile_repositories_exits_by_its_findings(files: dict[str, GenFile]) -> None:
    with _repo(files) as root:
        expected = run_pipeline(root)
        expected.plan.close()
        code, out, err = _cli("validate", str(root))
        assert "Traceback" not in out + err, out + err
        assert code in (ExitCode.OK, ExitCode.DEGRADED)
        assert code == expected.validate_exit, _describe(files, expected.plan.findings) + "\n" + out

        code, out, err = _cli("validate", str(root), "-o", "json")
        assert code == expected.validate_exit
        assert json.loads(out)["valid"] is (code == ExitCode.OK)

        code, out, err = _cli("diff", str(root), "--state", str(STATE), "-o", "json")
        assert "Traceback" not in out + err, out + err
        # diff is like kubectl diff: 0 same, 1 differs, 2 error (an invalid policy is an error).
        assert code in (ExitCode.OK, ExitCode.DEGRADED, ExitCode.FATAL)
        assert code == expected.diff_exit, _describe(files, expected.plan.findings) + "\n" + err
        assert isinstance(json.loads(out), dict)
        errors = any(f.is_error for f in expected.plan.findings)
        assert (code == ExitCode.FATAL) == (errors or expected.changes.has_errors)
