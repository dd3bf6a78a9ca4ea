"""The status render memo: an unchanged report is neither rendered nor parsed, and nothing else changes.

The memo exists only for speed, so every test here compares against the same calls without it:
identical files, identical documents read back. The counts (renders, YAML parses) are what the
memo saves; the edits behind our back (same size, another mtime; a new renderer) are what it must
never get wrong.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reconciler.findings import ObjectKey
from reconciler.status import RenderMemo, read_status_dir, write_status_dir
from reconciler.status import files as status_files

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _docs(n: int, state: str = "ACCEPTED") -> dict[ObjectKey, dict[str, Any]]:
    out: dict[ObjectKey, dict[str, Any]] = {}
    for i in range(n):
        key = ObjectKey("VirtualDestination", "gloo-mesh", f"svc-{i}")
        out[key] = {
            "apiVersion": "networking.enterprise.mesh.gloo.solo.io/v1beta1",
            "kind": key.kind,
            "metadata": {"name": key.name, "namespace": key.namespace},
            "status": {
                "state": state,
                "observedGeneration": 1,
                "specHash": f"{i:016x}",
                "messages": ["line one\nline two", "yes", "007"],
                "clusters": {"c1": {"state": state, "objects": [{"kind": "ServiceEntry", "name": f"s{i}"}]}},
            },
        }
    return out


class Counted:
    """Counts the calls of a module function while still calling it (instrumentation, not a fake)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.real = getattr(status_files, name)
        self.calls = 0
        monkeypatch.setattr(status_files, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not (args and args[0] is status_files._CANARY):
            self.calls += 1
        return self.real(*args, **kwargs)


def _edit_behind_our_back(path: Path) -> None:
    """Same size, other content (e.g. git checked out another revision): only the mtime tells."""
    original = path.read_text()
    edited = original.replace("ACCEPTED", "ACCEPTEX")
    assert edited != original and len(edited) == len(original)
    path.write_text(edited)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_second_pass_renders_and_parses_nothing_and_reads_back_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(20)
    memo_path = tmp_path / "private" / "memo.json"
    write_status_dir(tmp_path / "with", "status", docs, COMMIT, RenderMemo.load(memo_path))
    write_status_dir(tmp_path / "without", "status", docs, COMMIT)
    assert _tree(tmp_path / "with") == _tree(tmp_path / "without")
    without = read_status_dir(tmp_path / "without", "status")

    renders = Counted(monkeypatch, "render_doc")
    parses = Counted(monkeypatch, "load")
    memo = RenderMemo.load(memo_path)
    assert read_status_dir(tmp_path / "with", "status", memo) == without == docs
    assert write_status_dir(tmp_path / "with", "status", docs, COMMIT, memo) is False
    assert (renders.calls, parses.calls) == (0, 0)


def test_changed_document_is_rendered_again_and_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(5)
    memo_path = tmp_path / "memo.json"
    write_status_dir(tmp_path / "repo", "status", docs, COMMIT, RenderMemo.load(memo_path))
    changed = dict(docs)
    key = next(iter(changed))
    changed[key] = {**changed[key], "status": {**changed[key]["status"], "state": "INVALID"}}
    renders = Counted(monkeypatch, "render_doc")
    assert write_status_dir(tmp_path / "repo", "status", changed, COMMIT, RenderMemo.load(memo_path))
    assert renders.calls == 1
    write_status_dir(tmp_path / "plain", "status", changed, COMMIT)
    assert _tree(tmp_path / "repo") == _tree(tmp_path / "plain")


def test_a_file_edited_behind_our_back_is_parsed_and_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(3)
    memo_path = tmp_path / "memo.json"
    repo = tmp_path / "repo"
    write_status_dir(repo, "status", docs, COMMIT, RenderMemo.load(memo_path))
    path = repo / "status" / "VirtualDestination" / "gloo-mesh" / "svc-1.yaml"
    original = path.read_text()
    _edit_behind_our_back(path)

    parses = Counted(monkeypatch, "load")
    memo = RenderMemo.load(memo_path)
    read = read_status_dir(repo, "status", memo)
    assert parses.calls == 1
    assert read[ObjectKey("VirtualDestination", "gloo-mesh", "svc-1")]["status"]["state"] == "ACCEPTEX"
    assert write_status_dir(repo, "status", docs, COMMIT, memo) is True
    assert path.read_text() == original


def test_memo_from_another_renderer_or_unreadable_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _docs(4)
    memo_path = tmp_path / "memo.json"
    write_status_dir(tmp_path / "repo", "status", docs, COMMIT, RenderMemo.load(memo_path))
    assert len(RenderMemo.load(memo_path).files) == 4

    data = json.loads(memo_path.read_text())
    data["canary"] = data["canary"].replace("ACCEPTED", "accepted")  # what a changed renderer would write
    # A poisoned entry: reused, its document would be read back instead of the file's.
    rel = "VirtualDestination/gloo-mesh/svc-0.yaml"
    data["files"][rel][0] = data["files"][rel][0].replace("ACCEPTED", "poisoned")
    memo_path.write_text(json.dumps(data))
    assert RenderMemo.load(memo_path).files == {}
    read = read_status_dir(tmp_path / "repo", "status", RenderMemo.load(memo_path))
    assert read == docs
    (tmp_path / "repo" / "status" / rel).unlink()
    write_status_dir(tmp_path / "repo", "status", docs, COMMIT, RenderMemo.load(memo_path))
    assert "poisoned" not in (tmp_path / "repo" / "status" / rel).read_text()

    for junk in ("", "{", "[]", '{"version": 1, "files": 3}'):
        memo_path.write_text(junk)
        assert RenderMemo.load(memo_path).files == {}
    assert RenderMemo.load(tmp_path / "missing.json").files == {}


def test_memo_that_cannot_be_saved_is_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    memo = RenderMemo.load(blocker / "memo.json")
    assert write_status_dir(tmp_path / "repo", "status", _docs(2), COMMIT, memo) is True
    assert (tmp_path / "repo" / "status" / "README.md").is_file()


def test_removed_policy_leaves_the_memo(tmp_path: Path) -> None:
    docs = _docs(3)
    memo_path = tmp_path / "memo.json"
    write_status_dir(tmp_path / "repo", "status", docs, COMMIT, RenderMemo.load(memo_path))
    fewer = dict(list(docs.items())[:2])
    assert write_status_dir(tmp_path / "repo", "status", fewer, COMMIT, RenderMemo.load(memo_path))
    assert sorted(RenderMemo.load(memo_path).files) == [
        "VirtualDestination/gloo-mesh/svc-0.yaml",
        "VirtualDestination/gloo-mesh/svc-1.yaml",
    ]


# --- reuse: reports whose inputs are those of the pass that wrote them --------------------------------


def _fingerprints(docs: dict[ObjectKey, Any], inputs: str) -> dict[ObjectKey, str]:
    return {key: f"{inputs}:{key.name}" for key in docs}


def _written(tmp_path: Path, n: int) -> tuple[dict[ObjectKey, Any], dict[ObjectKey, str], Path, Path]:
    """``n`` reports written with fingerprints ``inputs-1``: (docs, fingerprints, memo path, repo)."""
    docs = _docs(n)
    memo_path, repo = tmp_path / "memo.json", tmp_path / "repo"
    fps = _fingerprints(docs, "inputs-1")
    write_status_dir(repo, "status", docs, COMMIT, RenderMemo.load(memo_path), fps)
    return docs, fps, memo_path, repo


def test_the_same_fingerprints_reuse_the_documents_and_write_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs, fps, memo_path, repo = _written(tmp_path, 6)
    before = _tree(repo)
    memo = RenderMemo.load(memo_path)
    assert memo.reusable(_fingerprints(docs, "inputs-2"), repo, "status") == {}
    assert memo.reusable({key: "" for key in docs}, repo, "status") == {}
    assert memo.reusable({}, repo, "status") == {}

    renders, dumps = Counted(monkeypatch, "render_doc"), Counted(monkeypatch, "_canonical")
    reused = memo.reusable(fps, repo, "status")
    assert reused == docs == read_status_dir(repo, "status")
    assert write_status_dir(repo, "status", docs, COMMIT, memo, fps) is False
    assert (renders.calls, dumps.calls) == (0, 0)
    assert _tree(repo) == before


def test_only_the_reports_whose_inputs_changed_are_built_and_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One drifted object: the reports of its policies are built again, the others reused."""
    docs, fps, memo_path, repo = _written(tmp_path, 5)
    drifted = ObjectKey("VirtualDestination", "gloo-mesh", "svc-3")
    fps[drifted] = "inputs-2:svc-3"
    memo = RenderMemo.load(memo_path)
    reused = memo.reusable(fps, repo, "status")
    assert sorted(reused) == sorted(k for k in docs if k != drifted)
    rebuilt = {drifted: {**docs[drifted], "status": {**docs[drifted]["status"], "state": "FAILED"}}}
    renders = Counted(monkeypatch, "render_doc")
    merged = dict(sorted({**reused, **rebuilt}.items()))
    assert write_status_dir(repo, "status", merged, COMMIT, memo, fps) is True
    assert renders.calls == 1
    write_status_dir(tmp_path / "plain", "status", merged, COMMIT)
    assert _tree(repo) == _tree(tmp_path / "plain")
    assert RenderMemo.load(memo_path).reusable(fps, repo, "status") == merged


def test_reports_written_without_fingerprints_are_never_reused(tmp_path: Path) -> None:
    """A sharded pass, or one without a build cache: nothing may be reused later."""
    docs, fps, memo_path, repo = _written(tmp_path, 3)
    write_status_dir(repo, "status", docs, COMMIT, RenderMemo.load(memo_path))
    assert RenderMemo.load(memo_path).reusable(fps, repo, "status") == {}


@pytest.mark.parametrize("touch", ["edit", "remove", "add"])
def test_a_report_touched_behind_our_back_is_never_reused(tmp_path: Path, touch: str) -> None:
    """Same inputs, but the report is not as that pass left it (a user's commit, a reset after a
    lost push race): it is built and written again, exactly as without a memo."""
    docs, fps, memo_path, repo = _written(tmp_path, 3)
    reports = repo / "status" / "VirtualDestination" / "gloo-mesh"
    untouched = {ObjectKey("VirtualDestination", "gloo-mesh", n) for n in ("svc-0", "svc-1", "svc-2")}
    if touch == "edit":
        _edit_behind_our_back(reports / "svc-1.yaml")
        untouched.discard(ObjectKey("VirtualDestination", "gloo-mesh", "svc-1"))
    elif touch == "remove":
        (reports / "svc-2.yaml").unlink()
        untouched.discard(ObjectKey("VirtualDestination", "gloo-mesh", "svc-2"))
    else:
        (reports / "svc-9.yaml").write_text((reports / "svc-0.yaml").read_text().replace("svc-0", "svc-9"))
    memo = RenderMemo.load(memo_path)
    assert set(memo.reusable(fps, repo, "status")) == untouched
    assert write_status_dir(repo, "status", docs, COMMIT, memo, fps) is True
    write_status_dir(tmp_path / "plain", "status", docs, COMMIT)
    assert _tree(repo) == _tree(tmp_path / "plain")
    assert RenderMemo.load(memo_path).reusable(fps, repo, "status") == docs


def test_the_memo_keeps_the_documents_compressed_and_reads_them_back(tmp_path: Path) -> None:
    """Every pass holds the memo: its documents are packed against a dictionary (one of them)."""
    docs = _docs(20)
    memo_path = tmp_path / "memo.json"
    repo = tmp_path / "repo"
    write_status_dir(repo, "status", docs, COMMIT, RenderMemo.load(memo_path))
    memo = RenderMemo.load(memo_path)
    plain = sum(len(json.dumps(d, sort_keys=True, separators=(",", ":"))) for d in docs.values())
    assert sum(len(entry[0]) for entry in memo.files.values()) < plain / 2
    assert read_status_dir(repo, "status", memo) == docs  # read back from the memo, exactly
    rel = next(iter(memo.files))
    memo.files[rel][0] = memo.files[rel][0][:-8] + "AAAAAAAA"  # damaged: not read back, not trusted
    assert memo.document(rel, repo / "status" / rel) is None
    assert read_status_dir(repo, "status", memo) == docs  # (that one parsed from its file instead)
