"""A revision of a local repository as a plain directory: what ``impact --base REF`` reviews.

``git archive`` of the commit into a temporary directory: nothing in the repository changes (no
worktree registered, no index or HEAD touched), so it is safe inside a pre-commit hook or a CI
checkout, and the tree is exactly what was committed (uncommitted edits never leak into the base).
Paths under the repository root select a subdirectory; one that does not exist at that revision is
an empty directory (a pull request that adds the policy directory has an empty base).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler.source._runner import GitRunner
from reconciler.source.auth import git_session
from reconciler.source.checkout import check_ref_name
from reconciler.source.errors import SourceError, SourceErrorKind


@dataclass(frozen=True)
class Revision:
    """A revision written out as files: ``path`` holds the policy directory as committed at ``sha``."""

    path: Path
    ref: str
    sha: str


def repository_root(path: Path) -> Path:
    """The work tree containing ``path`` (the nearest parent with a ``.git`` directory or file)."""
    here = path.expanduser().absolute()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    raise SourceError(f"{path} is not inside a git repository", SourceErrorKind.NOT_A_REPO)


def resolve_revision(path: Path, ref: str) -> str:
    """The commit ``ref`` names in the repository holding ``path`` (a branch, tag, sha, ``HEAD~1``)."""
    top = repository_root(path)
    _check_ref(ref)
    with git_session(None) as session:
        runner = GitRunner(top, session)
        found = runner.run(
            "rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}", check=False
        )
    if not found.ok or not found.stdout.strip():
        raise SourceError(f"revision {ref!r} not found in {top}", SourceErrorKind.NOT_FOUND)
    return found.stdout.strip()


@contextmanager
def materialize(path: Path, ref: str) -> Iterator[Revision]:
    """The directory ``path`` (inside a local git repository) as it is at ``ref``, in a temporary
    directory removed when the block ends. Raises :class:`SourceError` for an unknown revision."""
    top = repository_root(path)
    rel = path.expanduser().absolute().relative_to(top).as_posix()
    sha = resolve_revision(top, ref)
    tmp = Path(tempfile.mkdtemp(prefix="mesh-reconciler-rev-"))
    try:
        tree = tmp / "tree"
        tree.mkdir()
        with git_session(None) as session:
            runner = GitRunner(top, session)
            treeish = sha if rel in ("", ".") else f"{sha}:{rel}"
            exists = runner.run("cat-file", "-e", treeish, check=False).ok
            if exists:
                archive = tmp / "tree.tar"
                runner.run("archive", "--format=tar", "-o", str(archive), treeish, what=f"git archive {ref}")
                with tarfile.open(archive) as tar:
                    # "data": no absolute paths, no links leaving the tree, no device files.
                    tar.extractall(tree, filter="data")
                archive.unlink()
        yield Revision(tree, ref, sha)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_ref(ref: str) -> None:
    """Refuse what git would read as an option; ``~``/``^`` suffixes (``HEAD~1``) are fine."""
    if not ref or ref.startswith("-"):
        raise SourceError(f"invalid revision {ref!r}", SourceErrorKind.CONFIG)
    base = ref.split("~", 1)[0].split("^", 1)[0]
    if base and base != "HEAD" and not all(c in "0123456789abcdef" for c in base.lower()):
        check_ref_name(base, "revision")
