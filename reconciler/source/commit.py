"""Commit status reports back to the policy repository without ever losing a user's commit.

The reconciler is one writer among many: people push policy changes at any time. So the status
commit is an ordinary fast-forward push — never a force push. When the server rejects it because the
branch moved, we fetch the new head, drop our unpublished commit, let the caller regenerate the
status files on top of the user's work and try again (a bounded number of times). The user's commits
therefore always survive, and ours lands on top.

Only the status directory is staged and committed, so nothing else in the worktree (or a mistake in
a regenerate callback) can sneak into a commit authored by the reconciler.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.source._runner import GitRunner, Result, classify
from reconciler.source.auth import git_session
from reconciler.source.checkout import Checkout, check_ref_name, normalize_status_dir
from reconciler.source.errors import SourceError, SourceErrorKind

log = logging.getLogger("reconciler.source")

_RETRYABLE = ("[rejected]", "fetch first", "non-fast-forward", "stale info", "cannot lock ref")
_MOVED_DURING_PUSH = ("but expected", "incorrect old value")
"""A ``[remote rejected]`` that only means another push updated the branch while ours was being
received (git: ``cannot lock ref 'refs/heads/main': is at X but expected Y``; hosted servers:
``incorrect old value provided``) — two writers pushing at the same moment, e.g. shards."""


def _rejected_because_moved(result: Result) -> bool:
    """True when the push lost a race (branch moved); False for hooks, permissions, network."""
    text = result.output
    if "[remote rejected]" in text:
        return any(marker in text for marker in _MOVED_DURING_PUSH)
    return any(marker in text for marker in _RETRYABLE)


def commit_status(
    checkout: Checkout,
    status_dir_rel: str,
    *,
    message: str | Callable[[], str],
    author_name: str,
    author_email: str,
    push: bool = True,
    status_branch: str | None = None,
    regenerate: Callable[[Path], bool],
    max_attempts: int = 3,
) -> str | None:
    """Write status via ``regenerate(worktree_root)``, commit only ``status_dir_rel`` and push it.

    Returns the sha of the status commit, or None when ``regenerate`` reported no change (or the
    status directory ends up identical to the branch head). ``message`` may be a function, asked
    after each ``regenerate``: what is committed can change when the status is rebuilt on top of
    another writer's commit (e.g. a sharded run merging the other shards' results). With ``status_branch`` the commit goes to
    that branch instead (created from the checked-out commit if it does not exist yet).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    status_rel = normalize_status_dir(status_dir_rel)
    if not status_rel:
        raise ValueError("the status directory must be a subdirectory, not the repository root")
    target = status_branch if status_branch is not None else checkout.branch
    if target is None:
        raise SourceError(
            "cannot push status: the checkout is a pinned revision (detached HEAD); give a status branch",
            SourceErrorKind.CONFIG,
        )
    check_ref_name(target, "status branch")
    env_identity = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    with git_session(checkout.auth, checkout.credentials) as session:
        session.env.update(env_identity)
        main = GitRunner(checkout.path, session, checkout.timeout)
        if status_branch is None:
            return _commit_loop(
                main, target, status_rel, message, push, regenerate, max_attempts, same_branch=True
            )
        with _status_worktree(main, status_branch) as runner:
            sha = _commit_loop(
                runner, target, status_rel, message, push, regenerate, max_attempts, same_branch=False
            )
            if sha is not None and not push:
                # Keep the unpublished commit reachable after the temporary worktree is removed.
                main.run("update-ref", f"refs/heads/{status_branch}", sha)
            return sha


def _commit_loop(
    runner: GitRunner,
    target: str,
    status_rel: str,
    message: str | Callable[[], str],
    push: bool,
    regenerate: Callable[[Path], bool],
    max_attempts: int,
    *,
    same_branch: bool,
) -> str | None:
    remote_ref = f"refs/remotes/origin/{target}"
    for attempt in range(1, max_attempts + 1):
        if not regenerate(runner.work_tree):
            log.info("status unchanged; nothing to commit")
            return None
        tracked = runner.out("ls-files", "--", status_rel)
        if not tracked and not (runner.work_tree / status_rel).exists():
            log.info("no status directory written; nothing to commit")
            return None
        runner.run("add", "-A", "--", status_rel, what="staging status")
        staged = runner.run("diff", "--cached", "--quiet", "--", status_rel, check=False)
        if staged.ok:
            log.info("status files equal the branch head; nothing to commit")
            return None
        text = message() if callable(message) else message
        runner.run("commit", "-q", "--no-verify", "-m", text, "--", status_rel, what="committing status")
        sha = runner.out("rev-parse", "HEAD")
        if not push:
            return sha
        result = runner.run(
            "push", "--porcelain", "--no-verify", "origin", f"HEAD:refs/heads/{target}", check=False
        )
        if result.ok:
            log.info("pushed status commit %s to %s", sha[:12], target)
            # The remote branch is at our commit now: record it, so the next fetch of an unchanged
            # branch finds it up to date instead of fetching our own commit back.
            runner.run("update-ref", remote_ref, sha)
            return sha
        if not _rejected_because_moved(result):
            raise classify(result, f"pushing status to branch {target!r}")
        log.warning(
            "status push to %s rejected: the branch moved (attempt %d of %d); rebuilding on the new head",
            target,
            attempt,
            max_attempts,
        )
        if attempt == max_attempts:
            break
        runner.run(
            "fetch",
            "-q",
            "--no-tags",
            "origin",
            f"+refs/heads/{target}:{remote_ref}",
            what=f"fetching {target!r}",
        )
        if same_branch:
            runner.run("checkout", "-q", "-f", "-B", target, remote_ref)
        else:
            runner.run("checkout", "-q", "-f", "--detach", remote_ref)
        runner.run("reset", "-q", "--hard", remote_ref)
        runner.run("clean", "-q", "-ffdx", "--", status_rel)
    raise SourceError(
        f"status push to branch {target!r} was rejected {max_attempts} times because the branch kept moving; "
        "the status will be written by the next run",
        SourceErrorKind.PUSH_REJECTED,
    )


@contextmanager
def _status_worktree(main: GitRunner, status_branch: str) -> Iterator[GitRunner]:
    """A temporary worktree at the status branch head (or at HEAD if the branch does not exist yet).

    The policy checkout stays untouched, so the caller's view of the desired state never changes
    while status is being written elsewhere.
    """
    remote_ref = f"refs/remotes/origin/{status_branch}"
    shallow = (main.work_tree / ".git" / "shallow").exists()
    found = main.run(
        "fetch",
        "-q",
        "--no-tags",
        *(["--depth=1"] if shallow else []),
        "origin",
        f"+refs/heads/{status_branch}:{remote_ref}",
        check=False,
    )
    if found.ok:
        base = main.out("rev-parse", "--verify", f"{remote_ref}^{{commit}}")
    else:
        error = classify(found, f"fetching status branch {status_branch!r}")
        if error.kind is not SourceErrorKind.NOT_FOUND:
            raise error
        base = main.out("rev-parse", "HEAD")  # the branch does not exist yet: start it here
    holder = Path(tempfile.mkdtemp(prefix="mesh-reconciler-status-"))
    path = holder / "worktree"
    try:
        main.run("worktree", "add", "-q", "--detach", str(path), base, what="creating status worktree")
        yield GitRunner(path, main.session, main.timeout)
    finally:
        main.run("worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(holder, ignore_errors=True)
        main.run("worktree", "prune", check=False)
