"""Fetch the policy repository into a local cache and say which commit holds the desired state.

The cache is a working clone we own: every run fetches, then hard-resets and cleans it, so nothing a
previous run (or a person) left there can leak into the desired state. A first clone is built in a
temporary sibling directory and renamed into place only when complete, so an interrupted clone never
looks like good content. A failed fetch of an existing cache leaves its worktree untouched and raises;
the caller then stops before applying or pruning anything.

:attr:`Checkout.policy_commit` is the newest commit that changed something *outside* the status
directory. Our own status commits land on the same branch; if they counted as new desired state,
every status commit would trigger another reconcile, another status commit, and so on forever.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.repo_config import repo_subdir
from reconciler.source._runner import DEFAULT_TIMEOUT, GitRunner, classify
from reconciler.source.auth import Credentials, GitAuth, git_session
from reconciler.source.errors import SourceError, SourceErrorKind
from reconciler.source.redact import redact_url

log = logging.getLogger("reconciler.source")

CACHE_MARKER_KEY = "meshreconciler.url"
"""Git config key that marks a directory as our cache and records which URL it mirrors."""
INCOMPLETE_MARKER = "mesh-reconciler-incomplete"
"""File in ``.git`` present while an update of the cache is in progress (or failed half-way)."""

FIRST_DEEPEN = 1
DEEPEN_FACTOR = 4
MAX_DEEPEN_ROUNDS = 6
"""Deepen a shallow clone by 1, 4, 16 ... 1024 commits looking for the policy commit, then unshallow.
The first step is one commit: usually HEAD itself or its parent is the policy commit."""

_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|([\x00-\x20\x7f~^:?*\[\\])|(@\{)|(/\.)|(\.lock$)|(/$)|(//)")


@dataclass(frozen=True)
class Checkout:
    """A clean working tree of the policy repository at a known commit."""

    path: Path
    sha: str
    """HEAD of the working tree (may be one of our own status commits)."""
    branch: str | None
    """The branch checked out, or None when a revision was pinned (detached HEAD)."""
    policy_commit: str
    """Newest commit that changed anything outside the status directory: the desired state's id."""
    url: str
    """Remote URL without credentials (safe to print)."""
    revision: str | None = None
    status_dir: str = "status"
    auth: GitAuth | None = field(default=None, repr=False)
    credentials: Credentials | None = field(default=None, repr=False, compare=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def short_policy_commit(self) -> str:
        return self.policy_commit[:12]

    @property
    def private_dir(self) -> Path | None:
        """A directory for the reconciler's own files between passes (memos), never committed.

        Inside the cache clone's git directory, where no ``git add`` or ``git clean`` looks; None
        when the checkout is not such a clone (nothing is kept then).
        """
        git_dir = self.path / ".git"
        return git_dir / "mesh-reconciler" if git_dir.is_dir() else None


# --------------------------------------------------------------------------------------------------
# input checks


def normalize_url(url_or_path: str) -> tuple[str, Credentials | None]:
    """The URL to store in ``.git/config`` (credentials removed) and any credentials it carried.

    Credentials found in an http(s) URL are handed to git through askpass like a configured token,
    so they are never written into the cache's config. Local paths become absolute paths.
    """
    raw = url_or_path.strip()
    if not raw or raw.startswith("-"):
        raise SourceError(f"invalid repository URL {raw!r}", SourceErrorKind.CONFIG)
    if "://" in raw:
        parts = urllib.parse.urlsplit(raw)
        if parts.scheme.lower() in ("http", "https") and (parts.username or parts.password):
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            netloc = host + (f":{parts.port}" if parts.port else "")
            creds = Credentials(
                urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or "")
            )
            return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), creds
        return raw, None
    if re.match(r"^[\w.-]+@[\w.-]+:", raw):  # scp-like ssh syntax: git@github.com:org/repo.git
        return raw, None
    path = Path(raw).expanduser().absolute()
    return str(path), None


def check_ref_name(value: str, what: str) -> str:
    """Reject names that git would parse as options or that are not valid ref names."""
    if not value or _BAD_REF.search(value):
        raise SourceError(f"invalid {what} name {value!r}", SourceErrorKind.CONFIG)
    return value


def normalize_status_dir(status_dir: str) -> str:
    """``status`` / ``sub/status`` as a clean relative POSIX path ("" means the whole repository)."""
    if status_dir.strip() in ("", ".", "./"):
        return ""
    return repo_subdir(status_dir)


# --------------------------------------------------------------------------------------------------
# fetch


def fetch(
    url_or_path: str,
    cache_dir: Path,
    *,
    branch: str | None = "main",
    revision: str | None = None,
    auth: GitAuth | None = None,
    depth: int | None = 1,
    status_dir: str = "status",
    timeout: float = DEFAULT_TIMEOUT,
) -> Checkout:
    """Bring ``cache_dir`` to the wanted branch head (or pinned revision) of the repository.

    ``branch=None`` means the remote's default branch. ``depth`` limits history (None: full); it is
    deepened as needed to find :attr:`Checkout.policy_commit`. ``status_dir`` is relative to the
    repository root. Raises :class:`SourceError` (redacted) on any failure.
    """
    if depth is not None and depth < 1:
        raise ValueError("depth must be >= 1 or None")
    url, creds = normalize_url(url_or_path)
    if branch is not None:
        check_ref_name(branch, "branch")
    if revision is not None:
        check_ref_name(revision, "revision")
    status_rel = normalize_status_dir(status_dir)
    cache_dir = cache_dir.expanduser().absolute()

    with git_session(auth, creds) as session:
        redact = session.redact
        state = _cache_state(cache_dir, url, GitRunner(cache_dir, session, timeout))
        if state == "ours":
            runner = GitRunner(cache_dir, session, timeout)
            try:
                sha, got_branch, policy = _sync(runner, url, branch, revision, depth, status_rel)
            except SourceError as exc:
                if exc.kind is not SourceErrorKind.LOCAL:
                    raise  # remote trouble: the cache is as good as before; the caller stops
                log.warning("cache %s is damaged (%s); cloning again", cache_dir, redact(exc))
            else:
                return _done(
                    cache_dir, sha, got_branch, policy, url, revision, status_rel, auth, creds, timeout
                )
        parent = cache_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.tmp-", dir=parent))
        try:
            runner = GitRunner(tmp, session, timeout)
            runner.run("init", "-q", what="git init")
            runner.run("config", CACHE_MARKER_KEY, url)
            runner.run("config", "remote.origin.url", url)
            sha, got_branch, policy = _sync(runner, url, branch, revision, depth, status_rel, fresh=True)
            if cache_dir.exists():
                _discard(cache_dir)
            os.rename(tmp, cache_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return _done(cache_dir, sha, got_branch, policy, url, revision, status_rel, auth, creds, timeout)


def _done(
    path: Path,
    sha: str,
    branch: str | None,
    policy: str,
    url: str,
    revision: str | None,
    status_dir: str,
    auth: GitAuth | None,
    creds: Credentials | None,
    timeout: float,
) -> Checkout:
    safe_url = _safe(url)
    log.info(
        "fetched %s %s at %s (policy commit %s)",
        safe_url,
        f"branch {branch}" if branch else f"revision {revision}",
        sha[:12],
        policy[:12],
    )
    return Checkout(path, sha, branch, policy, safe_url, revision, status_dir, auth, creds, timeout)


def _safe(url: str) -> str:
    return redact_url(url)


def _cache_state(cache_dir: Path, url: str, runner: GitRunner) -> str:
    """ "missing" (clone it), "ours" (update it) or "stale" (ours but another URL: replace it)."""
    if not cache_dir.exists():
        return "missing"
    if not cache_dir.is_dir():
        raise SourceError(f"cache path {cache_dir} exists and is not a directory", SourceErrorKind.CONFIG)
    if not (cache_dir / ".git").is_dir():
        if any(cache_dir.iterdir()):
            raise SourceError(
                f"cache directory {cache_dir} is not empty and is not a mesh-reconciler cache; "
                "refusing to delete it (point the cache somewhere else or empty it)",
                SourceErrorKind.CONFIG,
            )
        return "missing"
    marker = runner.run("config", "--get", CACHE_MARKER_KEY, check=False)
    if not marker.ok:
        raise SourceError(
            f"cache directory {cache_dir} holds a git repository that mesh-reconciler did not create; "
            "refusing to modify it",
            SourceErrorKind.CONFIG,
        )
    if marker.stdout.strip() != url:
        log.info("cache %s mirrors another repository; replacing it", cache_dir)
        return "stale"
    return "ours"


def _discard(path: Path) -> None:
    """Move a directory aside atomically, then delete it (a crash leaves no half-deleted cache)."""
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.rename(path, aside / path.name)
    shutil.rmtree(aside, ignore_errors=True)


def _sync(
    runner: GitRunner,
    url: str,
    branch: str | None,
    revision: str | None,
    depth: int | None,
    status_dir: str,
    *,
    fresh: bool = False,
) -> tuple[str, str | None, str]:
    """Fetch, check out, hard-reset and clean; return (HEAD sha, branch, policy commit).

    ``fresh``: the repository was just initialised (a first clone, or a CronJob's empty cache every
    pass): it has no refs to compare with and no work tree to repair, so the checkout alone leaves it
    exactly at the fetched commit — three git commands fewer (~15 ms each on 2 busy cores).
    """
    git_dir = runner.work_tree / ".git"
    marker = git_dir / INCOMPLETE_MARKER
    marker.write_text("update in progress or failed; the next fetch resets this cache\n", encoding="utf-8")
    safe_url = _safe(url)
    shallow = (git_dir / "shallow").exists()
    # A full clone wanted on a cache that an earlier run made shallow: unshallow it.
    depth_args = [f"--depth={depth}"] if depth is not None else (["--unshallow"] if shallow else [])

    if revision is None:
        branch, tip = _remote_tip(runner, safe_url, branch)
        spec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}"
        tracking = f"refs/remotes/origin/{branch}^{{commit}}"
        have = None if fresh else runner.run("rev-parse", "--verify", "-q", tracking, check=False)
        if (
            tip is not None
            and have is not None
            and have.ok
            and have.stdout.strip() == tip
            and not (depth is None and shallow)
        ):
            # Nothing new upstream (Flux's "skip the clone when the revision is unchanged"): no
            # fetch, and the history deepened earlier stays, so the policy commit is found at once.
            log.debug("branch %s of %s is still at %s: nothing to fetch", branch, safe_url, tip[:12])
            target = tip
        else:
            runner.run(
                "fetch",
                "-q",
                "--no-tags",
                *depth_args,
                "origin",
                spec,
                what=f"fetching branch {branch!r} from {safe_url}",
            )
            target = runner.out("rev-parse", "--verify", tracking)
        runner.run("checkout", "-q", "-f", "-B", branch, target)
        deepen_spec = spec
    else:
        target, deepen_spec = _fetch_revision(runner, safe_url, revision, depth_args)
        runner.run("checkout", "-q", "-f", "--detach", target)
    if not fresh:  # an earlier, possibly interrupted or hand-edited, work tree: exactly the commit
        runner.run("reset", "-q", "--hard", target)
        runner.run("clean", "-q", "-ffdx")
    sha = target  # a full sha (rev-parse or ls-remote), and what HEAD is after the checkout
    policy = find_policy_commit(runner, status_dir, deepen_spec, head=sha)
    marker.unlink()
    return sha, (branch if revision is None else None), policy


def _remote_tip(runner: GitRunner, safe_url: str, branch: str | None) -> tuple[str, str | None]:
    """(branch, the sha it points to upstream) from one ``ls-remote``; ``branch=None``: the default
    branch. The sha is None when the remote does not list the branch (the fetch then says why)."""
    if branch is None:
        out = runner.out(
            "ls-remote", "--symref", "origin", "HEAD", what=f"reading the default branch of {safe_url}"
        )
        for line in out.splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                branch = line[len("ref: refs/heads/") : -len("\tHEAD")]
        if branch is None:
            raise SourceError(
                f"{safe_url} has no default branch (empty repository?)", SourceErrorKind.NOT_FOUND
            )
        wanted = "HEAD"
    else:
        wanted = f"refs/heads/{branch}"
        out = runner.out("ls-remote", "origin", wanted, what=f"reading branch {branch!r} of {safe_url}")
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == wanted and _FULL_SHA.fullmatch(sha):
            return branch, sha
    return branch, None


def _fetch_revision(
    runner: GitRunner, safe_url: str, revision: str, depth_args: list[str]
) -> tuple[str, str]:
    """Fetch a pinned revision: a full sha directly (cheap), anything else via all branches and tags."""
    if _FULL_SHA.fullmatch(revision.lower()):
        result = runner.run("fetch", "-q", "--no-tags", *depth_args, "origin", revision.lower(), check=False)
        if result.ok:
            return runner.out("rev-parse", "--verify", f"{revision.lower()}^{{commit}}"), revision.lower()
        error = classify(result, f"fetching revision {revision} from {safe_url}")
        if error.kind in (SourceErrorKind.UNREACHABLE, SourceErrorKind.AUTH, SourceErrorKind.NOT_A_REPO):
            raise error
        # Servers may refuse a want for an unadvertised sha: look for it in the full history instead.
    spec = "+refs/heads/*:refs/remotes/origin/*"
    args = ["fetch", "-q", "--tags"]
    if (runner.work_tree / ".git" / "shallow").exists():
        args.append("--unshallow")
    runner.run(*args, "origin", spec, what=f"fetching history from {safe_url} to find revision {revision!r}")
    for candidate in (revision, f"refs/remotes/origin/{revision}", f"refs/tags/{revision}"):
        found = runner.run("rev-parse", "--verify", "-q", f"{candidate}^{{commit}}", check=False)
        if found.ok and found.stdout.strip():
            return found.stdout.strip(), spec
    raise SourceError(f"revision {revision!r} not found in {safe_url}", SourceErrorKind.NOT_FOUND)


def _shallow_commits(runner: GitRunner) -> set[str]:
    path = runner.work_tree / ".git" / "shallow"
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text(encoding="ascii").splitlines() if line.strip()}


def find_policy_commit(runner: GitRunner, status_dir: str, deepen_spec: str, head: str = "") -> str:
    """Newest commit reachable from HEAD that touched anything outside ``status_dir``.

    In a shallow clone the oldest fetched commit has no parent, so it looks as if it changed every
    file; when the answer is such a boundary commit we cannot trust it and deepen (bounded), then
    unshallow as the last resort, so the answer never depends on how deep the cache happens to be.
    ``head``: HEAD's sha when the caller already has it.
    """
    head = head or runner.out("rev-parse", "HEAD")
    if not status_dir:
        return head
    pathspec = ["--", ".", f":(exclude,literal){status_dir}"]
    step, rounds = FIRST_DEEPEN, 0
    while True:
        found = runner.out("rev-list", "-1", "HEAD", *pathspec)
        boundary = _shallow_commits(runner)
        if found and found not in boundary:
            return found
        if not boundary:
            return found or head  # complete history: nothing outside the status dir ever changed
        if rounds < MAX_DEEPEN_ROUNDS:
            runner.run(
                "fetch",
                "-q",
                "--no-tags",
                f"--deepen={step}",
                "origin",
                deepen_spec,
                what="deepening history",
            )
            step *= DEEPEN_FACTOR
        else:
            runner.run(
                "fetch", "-q", "--no-tags", "--unshallow", "origin", deepen_spec, what="unshallowing history"
            )
        rounds += 1
