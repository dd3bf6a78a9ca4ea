"""The source stage against real git: local bare repos (file://) and a real smart-HTTP server.

No mocks: every test runs the git CLI through reconciler.source, and the HTTP tests go through
git-http-backend behind Basic auth (tests/gitserver.py), so auth failures, shallow fetches and
push races behave exactly as they do against a hosted server.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest

from reconciler.findings import ObjectKey
from reconciler.source import (
    Checkout,
    GitAuth,
    Redactor,
    SourceError,
    SourceErrorKind,
    commit_status,
    fetch,
    redact_url,
)
from reconciler.source.auth import git_session
from reconciler.source.checkout import INCOMPLETE_MARKER
from reconciler.status import write_status_dir
from tests.gitserver import TOKEN, GitHttpServer, git_server, make_bare_repo, run_git, write_files
from tests.unit.helpers import EXAMPLE

__all__ = ["git_server"]  # the fixture, re-exported for pytest


class Author(TypedDict):
    author_name: str
    author_email: str


AUTHOR: Author = {"author_name": "mesh-reconciler", "author_email": "reconciler@example.com"}


def example_files() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(EXAMPLE.iterdir()) if p.is_file()}


def seed(path: Path) -> Path:
    return make_bare_repo(path, example_files())


def file_url(path: Path) -> str:
    return f"file://{path}"


def user_push(bare: Path, tmp: Path, files: dict[str, str | None], message: str, branch: str = "main") -> str:
    """A person's commit pushed straight into the bare repository; returns its sha."""
    work = tmp / f"user-{abs(hash((message, str(files))))}"
    if not work.exists():
        run_git("clone", "-q", "-b", branch, str(bare), str(work))
    else:
        run_git("pull", "-q", "--ff-only", "origin", branch, cwd=work)
    write_files(work, files)
    run_git("add", "-A", cwd=work)
    run_git("commit", "-q", "-m", message, cwd=work)
    run_git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    return run_git("rev-parse", "HEAD", cwd=work)


def head(bare: Path, ref: str = "main") -> str:
    return run_git("rev-parse", f"refs/heads/{ref}", cwd=bare)


def log(bare: Path, ref: str = "main") -> list[str]:
    """Subjects, newest first."""
    return run_git("log", "--format=%s", ref, cwd=bare).splitlines()


def writer(content: str, rel: str = "status/report.yaml") -> Callable[[Path], bool]:
    """A regenerate callback that writes one status file (True iff it changed)."""

    def regenerate(root: Path) -> bool:
        path = root / rel
        if path.exists() and path.read_text() == content:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return True

    return regenerate


def commit_count(checkout: Checkout) -> int:
    return int(run_git("rev-list", "--count", "HEAD", cwd=checkout.path))


def assert_token_nowhere(token: str, *texts: str, under: Path | None = None) -> None:
    for text in texts:
        assert token not in text
    if under is not None:
        for path in under.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert token.encode() not in path.read_bytes(), f"token found in {path}"


# --- fetch over file:// -----------------------------------------------------------------------------


def test_clone_is_shallow_and_clean(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    for i in range(3):
        user_push(bare, tmp_path, {"extra.yaml": f"# commit {i}\n"}, f"commit {i}")
    co = fetch(file_url(bare), tmp_path / "cache")
    assert commit_count(co) == 2  # HEAD, plus its parent to prove HEAD changed policy
    assert co.path == tmp_path / "cache"
    assert co.sha == head(bare) == co.policy_commit
    assert co.branch == "main"
    assert (co.path / "bookinfo-global.yaml").read_text() == (EXAMPLE / "bookinfo-global.yaml").read_text()
    assert run_git("status", "--porcelain", cwd=co.path) == ""
    assert run_git("rev-parse", "--abbrev-ref", "HEAD", cwd=co.path) == "main"
    assert run_git("rev-parse", "--is-shallow-repository", cwd=co.path) == "true"
    assert run_git("config", "remote.origin.url", cwd=co.path) == file_url(bare)
    assert not (co.path / ".git" / INCOMPLETE_MARKER).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".cache")] == []


def test_full_clone_with_depth_none(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    for i in range(4):
        user_push(bare, tmp_path, {f"f{i}.yaml": f"# {i}\n"}, f"commit {i}")
    assert commit_count(fetch(file_url(bare), tmp_path / "shallow")) < 5
    full = fetch(file_url(bare), tmp_path / "full", depth=None)
    assert commit_count(full) == 5
    assert run_git("rev-parse", "--is-shallow-repository", cwd=full.path) == "false"
    # A shallow cache asked for full history is unshallowed in place.
    again = fetch(file_url(bare), tmp_path / "shallow", depth=None)
    assert commit_count(again) == 5


def test_refetch_hard_resets_and_cleans(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    cache = tmp_path / "cache"
    first = fetch(file_url(bare), cache)
    # Someone changes the repository; meanwhile the cache gets dirty in every possible way.
    new = user_push(
        bare,
        tmp_path,
        {
            "virtual-mesh.yaml": None,
            "teams/new.yaml": "# new\n",
            "reconciler.yaml": "status: {path: status}\n",
        },
        "user change",
    )
    (cache / "bookinfo-global.yaml").write_text("tampered: true\n")
    (cache / "untracked.yaml").write_text("kind: Junk\n")
    (cache / "ignored-dir").mkdir()
    (cache / "ignored-dir" / "x").write_text("x")
    (cache / ".gitignore").write_text("ignored-dir/\n")
    run_git("add", "bookinfo-global.yaml", cwd=cache)

    second = fetch(file_url(bare), cache)
    assert second.sha == new != first.sha
    assert second.policy_commit == new
    assert not (cache / "virtual-mesh.yaml").exists()
    assert (cache / "teams" / "new.yaml").exists()
    assert not (cache / "untracked.yaml").exists()
    assert not (cache / "ignored-dir").exists()
    assert not (cache / ".gitignore").exists()
    assert (cache / "bookinfo-global.yaml").read_text() == (EXAMPLE / "bookinfo-global.yaml").read_text()
    assert run_git("status", "--porcelain", "--ignored", cwd=cache) == ""


def test_policy_commit_skips_status_commits(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    policy = user_push(bare, tmp_path, {"virtual-mesh.yaml": "# changed\n"}, "policy change")
    for i in range(20):  # more than the first deepening step
        user_push(bare, tmp_path, {"status/r.yaml": f"run: {i}\n"}, f"status {i}")
    co = fetch(file_url(bare), tmp_path / "cache")
    assert co.sha == head(bare)
    assert co.policy_commit == policy
    # A commit touching both status and policy files is a policy change.
    mixed = user_push(
        bare, tmp_path, {"status/r.yaml": "run: x\n", "virtual-mesh.yaml": "# again\n"}, "mixed"
    )
    user_push(bare, tmp_path, {"status/r.yaml": "run: y\n"}, "status y")
    co = fetch(file_url(bare), tmp_path / "cache")
    assert co.policy_commit == mixed
    # A status dir elsewhere (--path SUBDIR) is honoured.
    co = fetch(file_url(bare), tmp_path / "cache2", status_dir="other")
    assert co.policy_commit == co.sha


def test_pinned_revision_and_tag(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    old = head(bare)
    run_git("tag", "v1", old, cwd=bare)
    user_push(bare, tmp_path, {"x.yaml": "# x\n"}, "newer")
    co = fetch(file_url(bare), tmp_path / "cache", revision=old)
    assert (co.sha, co.branch, co.revision) == (old, None, old)
    assert not (co.path / "x.yaml").exists()
    tagged = fetch(file_url(bare), tmp_path / "cache", revision="v1")
    assert tagged.sha == old
    short = fetch(file_url(bare), tmp_path / "cache", revision=old[:10])
    assert short.sha == old
    with pytest.raises(SourceError) as err:
        fetch(file_url(bare), tmp_path / "cache", revision="f" * 40)
    assert err.value.kind is SourceErrorKind.NOT_FOUND


def test_default_branch_when_branch_is_none(tmp_path: Path) -> None:
    bare = make_bare_repo(tmp_path / "policy.git", example_files(), branch="trunk")
    co = fetch(file_url(bare), tmp_path / "cache", branch=None)
    assert co.branch == "trunk"
    assert co.sha == head(bare, "trunk")


def test_missing_branch_and_not_a_repo(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    with pytest.raises(SourceError) as err:
        fetch(file_url(bare), tmp_path / "cache", branch="gone")
    assert err.value.kind is SourceErrorKind.NOT_FOUND
    assert "'gone'" in str(err.value) and "not found" in str(err.value)
    (tmp_path / "plain").mkdir()
    with pytest.raises(SourceError) as err:
        fetch(str(tmp_path / "plain"), tmp_path / "cache")
    assert err.value.kind is SourceErrorKind.NOT_A_REPO
    assert "not a git repository" in str(err.value)
    assert not (tmp_path / "cache").exists()
    with pytest.raises(SourceError, match="invalid branch"):
        fetch(file_url(bare), tmp_path / "cache", branch="--upload-pack=evil")


def test_failed_fetch_keeps_previous_cache_intact(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    cache = tmp_path / "cache"
    good = fetch(file_url(bare), cache)
    before = {
        p.relative_to(cache): p.read_bytes()
        for p in cache.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }
    user_push(bare, tmp_path, {"new.yaml": "# new\n"}, "new")
    moved = tmp_path / "moved.git"
    bare.rename(moved)  # the server "goes away"
    with pytest.raises(SourceError):
        fetch(file_url(bare), cache)
    after = {
        p.relative_to(cache): p.read_bytes()
        for p in cache.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }
    assert after == before
    assert run_git("rev-parse", "HEAD", cwd=cache) == good.sha
    moved.rename(bare)
    assert fetch(file_url(bare), cache).sha == head(bare)


def test_foreign_cache_directory_is_refused_untouched(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    cache = tmp_path / "home"
    cache.mkdir()
    (cache / "precious.txt").write_text("mine")
    with pytest.raises(SourceError) as err:
        fetch(file_url(bare), cache)
    assert err.value.kind is SourceErrorKind.CONFIG
    assert (cache / "precious.txt").read_text() == "mine"
    other = tmp_path / "someones-repo"
    run_git("init", "-q", str(other))
    with pytest.raises(SourceError, match="did not create"):
        fetch(file_url(bare), other)


def test_cache_of_another_url_is_replaced(tmp_path: Path) -> None:
    a = seed(tmp_path / "a.git")
    b = make_bare_repo(tmp_path / "b.git", {"only-in-b.yaml": "# b\n"})
    cache = tmp_path / "cache"
    fetch(file_url(a), cache)
    co = fetch(file_url(b), cache)
    assert co.sha == head(b)
    assert sorted(p.name for p in cache.iterdir()) == [".git", "only-in-b.yaml"]


# --- commit_status ----------------------------------------------------------------------------------


def test_commit_status_commits_only_the_status_dir(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache")

    def regenerate(root: Path) -> bool:
        (root / "status").mkdir(exist_ok=True)
        (root / "status" / "a.yaml").write_text("state: ACCEPTED\n")
        (root / "stray.txt").write_text("must not be committed\n")  # a buggy callback
        return True

    sha = commit_status(co, "status", message="status: reconcile abc", regenerate=regenerate, **AUTHOR)
    assert sha is not None and head(bare) == sha
    assert run_git("show", "--name-only", "--format=%an <%ae>|%s", sha, cwd=bare).splitlines() == [
        "mesh-reconciler <reconciler@example.com>|status: reconcile abc",
        "",
        "status/a.yaml",
    ]
    assert run_git("rev-parse", f"{sha}^", cwd=bare) == co.sha
    # Our commit is not a new desired state.
    assert fetch(file_url(bare), tmp_path / "cache").policy_commit == co.policy_commit


def test_no_change_means_no_commit(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache")
    assert commit_status(co, "status", message="m", regenerate=lambda root: False, **AUTHOR) is None
    # regenerate claims a change but the files equal HEAD: still nothing to commit.
    assert commit_status(co, "status", message="m", regenerate=lambda root: True, **AUTHOR) is None
    assert head(bare) == co.sha


def test_two_identical_runs_make_one_status_commit(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    key = ObjectKey("VirtualMesh", "gloo-mesh", "virtual-mesh")
    results = []
    for _ in range(2):
        co = fetch(file_url(bare), tmp_path / "cache")
        docs: dict[ObjectKey, dict[str, Any]] = {
            key: {"kind": "VirtualMesh", "status": {"state": "ACCEPTED", "observedCommit": co.policy_commit}}
        }

        def regenerate(
            root: Path, docs: dict[ObjectKey, dict[str, Any]] = docs, commit: str = co.policy_commit
        ) -> bool:
            return write_status_dir(root, "status", docs, commit)

        message = f"status: reconcile {co.policy_commit[:7]}"
        results.append(commit_status(co, "status", message=message, regenerate=regenerate, **AUTHOR))
    assert results[0] is not None and results[1] is None
    subjects = log(bare)
    assert len([s for s in subjects if s.startswith("status:")]) == 1
    assert len(subjects) == 2


def test_push_race_keeps_the_users_commit(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache")
    user = user_push(bare, tmp_path, {"teams/new.yaml": "# a user's change\n"}, "user: add policy")
    calls: list[Path] = []

    def regenerate(root: Path) -> bool:
        calls.append(root)
        return writer("state: ACCEPTED\n")(root)

    sha = commit_status(co, "status", message="status: ours", regenerate=regenerate, **AUTHOR)
    assert sha == head(bare)
    assert len(calls) == 2  # rebuilt once on top of the user's commit
    assert log(bare) == ["status: ours", "user: add policy", "initial policy"]
    assert run_git("rev-parse", f"{sha}^", cwd=bare) == user
    assert run_git("show", "--name-only", "--format=", sha, cwd=bare) == "status/report.yaml"


def test_push_gives_up_after_max_attempts_and_loses_nothing(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache")
    pushed: list[str] = []

    def racing(root: Path) -> bool:
        # Someone pushes every time right after we regenerate: we can never win the race.
        pushed.append(user_push(bare, tmp_path, {f"u{len(pushed)}.yaml": "# u\n"}, f"user {len(pushed)}"))
        return writer(f"n: {len(pushed)}\n")(root)

    with pytest.raises(SourceError) as err:
        commit_status(co, "status", message="status: ours", regenerate=racing, max_attempts=3, **AUTHOR)
    assert err.value.kind is SourceErrorKind.PUSH_REJECTED
    assert len(pushed) == 3
    assert log(bare) == ["user 2", "user 1", "user 0", "initial policy"]


def test_push_refused_by_server_hook_is_not_retried(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch: use a pull request' >&2\nexit 1\n")
    hook.chmod(0o755)
    co = fetch(file_url(bare), tmp_path / "cache")
    calls: list[Path] = []

    def regenerate(root: Path) -> bool:
        calls.append(root)
        return writer("x: 1\n")(root)

    with pytest.raises(SourceError, match="pushing status"):
        commit_status(co, "status", message="m", regenerate=regenerate, **AUTHOR)
    assert len(calls) == 1
    assert log(bare) == ["initial policy"]


def test_status_branch_is_created_then_fast_forwarded(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache")
    first = commit_status(
        co,
        "status",
        message="status 1",
        status_branch="reconciler-status",
        regenerate=writer("n: 1\n"),
        **AUTHOR,
    )
    assert first == head(bare, "reconciler-status")
    assert head(bare) == co.sha  # main untouched
    assert run_git("rev-parse", f"{first}^", cwd=bare) == co.sha
    assert not (co.path / "status").exists()  # the policy checkout is not touched either
    # Main moves on; the next status commit goes on top of the status branch (fast-forward).
    user_push(bare, tmp_path, {"x.yaml": "# x\n"}, "user change")
    co = fetch(file_url(bare), tmp_path / "cache")
    second = commit_status(
        co,
        "status",
        message="status 2",
        status_branch="reconciler-status",
        regenerate=writer("n: 2\n"),
        **AUTHOR,
    )
    assert second == head(bare, "reconciler-status")
    assert run_git("rev-parse", f"{second}^", cwd=bare) == first
    same = commit_status(
        co,
        "status",
        message="status 3",
        status_branch="reconciler-status",
        regenerate=writer("n: 2\n"),
        **AUTHOR,
    )
    assert same is None
    assert run_git("worktree", "list", "--porcelain", cwd=co.path).count("worktree ") == 1


def test_commit_without_push(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache")
    sha = commit_status(co, "status", message="local", push=False, regenerate=writer("a: 1\n"), **AUTHOR)
    assert sha is not None and sha == run_git("rev-parse", "HEAD", cwd=co.path)
    assert head(bare) == co.sha


def test_detached_checkout_needs_a_status_branch(tmp_path: Path) -> None:
    bare = seed(tmp_path / "policy.git")
    co = fetch(file_url(bare), tmp_path / "cache", revision=head(bare))
    with pytest.raises(SourceError, match="status branch"):
        commit_status(co, "status", message="m", regenerate=writer("a: 1\n"), **AUTHOR)
    sha = commit_status(
        co, "status", message="m", status_branch="status", regenerate=writer("a: 1\n"), **AUTHOR
    )
    assert sha == head(bare, "status")


# --- over HTTP with a token -------------------------------------------------------------------------


def test_token_auth_over_http(
    tmp_path: Path, git_server: GitHttpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_server.create_repo("policy", example_files())
    monkeypatch.setenv("POLICY_TOKEN", TOKEN)
    co = fetch(git_server.url("policy"), tmp_path / "cache", auth=GitAuth(token_env="POLICY_TOKEN"))
    assert co.sha == head(git_server.repo_path("policy"))
    sha = commit_status(co, "status", message="status: http", regenerate=writer("ok: true\n"), **AUTHOR)
    assert sha == head(git_server.repo_path("policy"))
    assert ("POST", "/policy.git/git-receive-pack") in git_server.requests
    token_file = tmp_path / "secret" / "token"
    token_file.parent.mkdir()
    token_file.write_text(TOKEN + "\n")
    again = fetch(git_server.url("policy"), tmp_path / "cache", auth=GitAuth(token_file=token_file))
    assert again.sha == sha
    assert_token_nowhere(TOKEN, under=tmp_path / "cache")
    assert_token_nowhere(TOKEN, under=tmp_path / "git-server")


@pytest.mark.parametrize("branch", [None, "main"])
def test_an_unchanged_branch_is_not_fetched_again(
    tmp_path: Path, git_server: GitHttpServer, monkeypatch: pytest.MonkeyPatch, branch: str | None
) -> None:
    """A pass over an unchanged repository asks for the branch's tip (one ``ls-remote``) and fetches
    nothing; the policy commit is still right (found in the history an earlier pass deepened)."""
    bare = git_server.create_repo("policy", example_files())
    policy = user_push(bare, tmp_path, {"virtual-mesh.yaml": "# changed\n"}, "policy change")
    for i in range(3):  # status commits on top: the first fetch has to deepen to find the policy commit
        user_push(bare, tmp_path, {"status/r.yaml": f"run: {i}\n"}, f"status {i}")
    monkeypatch.setenv("POLICY_TOKEN", TOKEN)
    auth = GitAuth(token_env="POLICY_TOKEN")
    url, cache = git_server.url("policy"), tmp_path / "cache"

    def uploads() -> int:
        """Requests to git-upload-pack: a fetch makes two or more, listing the refs (protocol v2) one."""
        return git_server.requests.count(("POST", "/policy.git/git-upload-pack"))

    def fetch_head() -> int:
        """Every ``git fetch`` rewrites FETCH_HEAD, even one that brings nothing."""
        return (cache / ".git" / "FETCH_HEAD").stat().st_mtime_ns

    first = fetch(url, cache, branch=branch, auth=auth)
    assert (first.sha, first.policy_commit) == (head(bare), policy)
    assert uploads() >= 2  # the fetch, then at least one deepening
    before, fetched = uploads(), fetch_head()
    again = fetch(url, cache, branch=branch, auth=auth)
    assert (again.sha, again.policy_commit, again.branch) == (first.sha, policy, "main")
    assert uploads() - before <= 1 and fetch_head() == fetched  # the tip was read, nothing fetched
    assert run_git("status", "--porcelain", cwd=cache) == ""

    # Our own status commit, pushed: the next pass knows the branch is there, and fetches nothing.
    ours = commit_status(again, "status", message="status: test", regenerate=writer("ok: true\n"), **AUTHOR)
    assert ours == head(bare)
    after_ours = fetch(url, cache, branch=branch, auth=auth)
    assert (after_ours.sha, after_ours.policy_commit) == (ours, policy)
    assert fetch_head() == fetched

    newer = user_push(bare, tmp_path, {"virtual-mesh.yaml": "# newer\n"}, "another policy change")
    third = fetch(url, cache, branch=branch, auth=auth)
    assert third.sha == third.policy_commit == newer
    assert fetch_head() != fetched
    assert "# newer" in (cache / "virtual-mesh.yaml").read_text()


def test_wrong_or_missing_token_is_refused_and_never_leaked(
    tmp_path: Path,
    git_server: GitHttpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    git_server.create_repo("policy", example_files())
    wrong = "wr0ng-t0ken-5c3e11aa"
    monkeypatch.setenv("POLICY_TOKEN", wrong)
    with pytest.raises(SourceError) as err:
        fetch(git_server.url("policy"), tmp_path / "cache", auth=GitAuth(token_env="POLICY_TOKEN"))
    assert err.value.kind is SourceErrorKind.AUTH
    assert "authentication refused" in str(err.value)
    assert_token_nowhere(wrong, str(err.value), repr(err.value), caplog.text, under=tmp_path)
    with pytest.raises(SourceError) as err:
        fetch(git_server.url("policy"), tmp_path / "cache")  # no credentials at all
    assert err.value.kind is SourceErrorKind.AUTH
    monkeypatch.delenv("POLICY_TOKEN")
    with pytest.raises(SourceError, match="POLICY_TOKEN is not set") as err:
        fetch(git_server.url("policy"), tmp_path / "cache", auth=GitAuth(token_env="POLICY_TOKEN"))
    assert err.value.kind is SourceErrorKind.CONFIG
    assert not (tmp_path / "cache").exists()


def test_credentials_in_url_are_used_but_never_stored_or_shown(
    tmp_path: Path, git_server: GitHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    git_server.create_repo("policy", example_files())
    url = git_server.url("policy").replace("http://", f"http://bot:{TOKEN}@")
    co = fetch(url, tmp_path / "cache")
    assert TOKEN not in co.url and TOKEN not in repr(co)
    assert run_git("config", "remote.origin.url", cwd=co.path) == git_server.url("policy")
    assert commit_status(co, "status", message="s", regenerate=writer("a: 1\n"), **AUTHOR) is not None
    bad = git_server.url("policy").replace("http://", "http://bot:n0t-the-t0ken-1234@")
    with pytest.raises(SourceError) as err:
        fetch(bad, tmp_path / "cache2")
    assert "n0t-the-t0ken-1234" not in str(err.value)
    assert_token_nowhere(TOKEN, str(err.value), caplog.text, under=tmp_path / "cache")
    assert "n0t-the-t0ken-1234" not in caplog.text


def test_server_down_and_gone_branch_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("POLICY_TOKEN", TOKEN)
    auth = GitAuth(token_env="POLICY_TOKEN")
    with GitHttpServer(tmp_path / "srv") as server:
        server.create_repo("policy", example_files())
        url = server.url("policy")
        good = fetch(url, tmp_path / "cache", auth=auth)
        with pytest.raises(SourceError) as err:
            fetch(url, tmp_path / "cache", branch="deleted", auth=auth)
        assert err.value.kind is SourceErrorKind.NOT_FOUND
        with pytest.raises(SourceError) as missing:
            fetch(server.url("nope"), tmp_path / "cache-nope", auth=auth)
        assert missing.value.kind is SourceErrorKind.NOT_A_REPO
    with pytest.raises(SourceError) as down:
        fetch(url, tmp_path / "cache", auth=auth)
    assert down.value.kind is SourceErrorKind.UNREACHABLE
    assert "unreachable" in str(down.value)
    assert run_git("rev-parse", "HEAD", cwd=tmp_path / "cache") == good.sha
    assert_token_nowhere(
        TOKEN, str(err.value), str(missing.value), str(down.value), caplog.text, under=tmp_path
    )


@pytest.fixture
def hung_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (a stuck proxy or overloaded host)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/policy.git"
    stop.set()
    thread.join(timeout=5)
    sock.close()
    for conn in accepted:
        conn.close()


def test_hung_server_times_out(tmp_path: Path, hung_server: str) -> None:
    with pytest.raises(SourceError) as err:
        fetch(hung_server, tmp_path / "cache", timeout=1.0)
    assert err.value.kind is SourceErrorKind.UNREACHABLE
    assert "did not answer in time" in str(err.value)
    assert not (tmp_path / "cache").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the temporary clone is gone too


def test_push_race_over_http(tmp_path: Path, git_server: GitHttpServer) -> None:
    bare = git_server.create_repo("policy", example_files())
    url = git_server.url("policy").replace("http://", f"http://x:{TOKEN}@")
    co = fetch(url, tmp_path / "cache")
    user_push(bare, tmp_path, {"u.yaml": "# u\n"}, "user")
    sha = commit_status(co, "status", message="status: ours", regenerate=writer("s: 1\n"), **AUTHOR)
    assert sha == head(bare)
    assert log(bare) == ["status: ours", "user", "initial policy"]


# --- credentials plumbing ---------------------------------------------------------------------------


def test_ssh_command_pins_key_and_host(tmp_path: Path) -> None:
    key, known = tmp_path / "id key", tmp_path / "known_hosts"
    key.write_text("not a real key")
    known.write_text("")
    with git_session(GitAuth(ssh_key_file=key, known_hosts_file=known)) as session:
        ssh = session.env["GIT_SSH_COMMAND"]
    assert "StrictHostKeyChecking=yes" in ssh
    assert f"'{key}'" in ssh and f"UserKnownHostsFile={known}" in ssh
    assert "BatchMode=yes" in ssh
    with (
        pytest.raises(SourceError, match="does not exist"),
        git_session(GitAuth(ssh_key_file=tmp_path / "x")),
    ):
        pass


def test_askpass_helper_holds_no_secret_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T", TOKEN)
    with git_session(GitAuth(token_env="T")) as session:
        helper = Path(session.env["GIT_ASKPASS"])
        assert TOKEN not in helper.read_text()
        assert os.access(helper, os.X_OK)
        assert session.redact(f"x {TOKEN} y") == "x *** y"
    assert not helper.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://bot:tok@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("fatal: unable to access 'https://tok@h/r/'", "fatal: unable to access 'https://***@h/r/'"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://***@host/r.git"),
        ("Authorization: Basic eDp5", "Authorization: Basic ***"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
    ],
)
def test_redact_url(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_redactor_masks_encoded_forms() -> None:
    secret = "a/b+c=d"
    redact = Redactor([secret], username="bot")
    basic = base64.b64encode(f"bot:{secret}".encode()).decode()
    text = f"{secret} {urllib.parse.quote(secret, safe='')} {basic}"
    assert redact(text) == "*** *** ***"


def test_push_that_loses_the_ref_lock_at_the_server_is_rebuilt_and_retried(tmp_path: Path) -> None:
    """Two writers pushing at the same moment (e.g. shards): the server accepts ours, then finds the
    branch moved before it could update it (``[remote rejected] ... is at X but expected Y``). That is
    a lost race like ``fetch first``: rebuilt on top of the winner and pushed again. The message is
    asked for after each rebuild."""
    import threading

    bare = seed(tmp_path / "policy.git")
    gate = tmp_path / "gate"
    gate.mkdir()
    hook = bare / "hooks" / "pre-receive"
    # The first push received waits (bounded) until the test has pushed someone else's commit.
    hook.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        f'if mkdir "{gate}/first" 2>/dev/null; then\n'
        f'  i=0; while [ ! -e "{gate}/go" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n'
        "fi\nexit 0\n"
    )
    hook.chmod(0o755)
    co = fetch(file_url(bare), tmp_path / "cache")
    users: list[str] = []

    def other_writer() -> None:
        for _ in range(200):  # bounded: wait until our push is inside the hook
            if (gate / "first").exists():
                break
            threading.Event().wait(0.05)
        users.append(user_push(bare, tmp_path, {"other.yaml": "# other\n"}, "other writer"))
        (gate / "go").touch()

    thread = threading.Thread(target=other_writer)
    thread.start()
    rebuilt: list[int] = []

    def regenerate(root: Path) -> bool:
        rebuilt.append(len(rebuilt) + 1)
        return writer(f"attempt: {len(rebuilt)}\n")(root)

    sha = commit_status(
        co, "status", message=lambda: f"status: attempt {len(rebuilt)}", regenerate=regenerate, **AUTHOR
    )
    thread.join(30)
    assert sha == head(bare) and len(rebuilt) == 2
    assert log(bare) == ["status: attempt 2", "other writer", "initial policy"]
    assert run_git("rev-parse", f"{sha}^", cwd=bare) == users[0]
