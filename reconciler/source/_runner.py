"""Run git commands through GitPython with a bounded time, a controlled environment and redaction.

We drive the ``git`` CLI (through :meth:`git.Git.execute`) rather than GitPython's object model for
network operations: the CLI is what implements shallow fetch, ``--deepen``, askpass and push
porcelain output, and its behaviour is documented. Every result and error text passes through the
session's redactor before anyone can see it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import git

from reconciler.source.auth import GitSession
from reconciler.source.errors import SourceError, SourceErrorKind

log = logging.getLogger("reconciler.source")

DEFAULT_TIMEOUT = 120.0
"""Seconds any single git command may take before it is killed (network stalls, huge repos)."""


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def output(self) -> str:
        return "\n".join(part for part in (self.stdout, self.stderr) if part)


class GitRunner:
    """Runs git in one work tree; ``GIT_DIR``/``GIT_WORK_TREE`` are pinned so an inherited
    environment (e.g. running inside a git hook) cannot redirect our commands to another repo."""

    def __init__(self, work_tree: Path, session: GitSession, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.work_tree = work_tree
        self.session = session
        self.timeout = timeout
        self._git = git.Git(str(work_tree))

    def run(self, *args: str, check: bool = True, timeout: float | None = None, what: str = "") -> Result:
        env = dict(self.session.env)
        env["GIT_DIR"] = str(self.work_tree / ".git")
        env["GIT_WORK_TREE"] = str(self.work_tree)
        command = [git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git", *args]
        status, stdout, stderr = self._git.execute(
            command,
            with_extended_output=True,
            with_exceptions=False,
            kill_after_timeout=timeout or self.timeout,
            env=env,
            stdout_as_string=True,
        )
        result = Result(int(status), self.session.redact(stdout or ""), self.session.redact(stderr or ""))
        if status != 0:
            log.debug("git %s -> %s: %s", args[0] if args else "", status, result.stderr)
        if check and not result.ok:
            raise classify(result, what or f"git {args[0] if args else ''}".strip())
        return result

    def out(self, *args: str, what: str = "") -> str:
        return self.run(*args, what=what).stdout.strip()


_PATTERNS: tuple[tuple[SourceErrorKind, str, re.Pattern[str]], ...] = (
    (
        SourceErrorKind.UNREACHABLE,
        "the git server did not answer in time",
        re.compile(r"Timeout: the command|timed out|Operation too slow", re.I),
    ),
    (
        SourceErrorKind.AUTH,
        "authentication refused (check the token or SSH key)",
        re.compile(
            r"Authentication failed|could not read (Username|Password)|terminal prompts disabled|"
            r"returned error: 40[13]|HTTP 40[13]|Permission denied \(publickey|Host key verification failed|"
            r"invalid credentials|access denied",
            re.I,
        ),
    ),
    (
        SourceErrorKind.UNREACHABLE,
        "the git server is unreachable",
        re.compile(
            r"Could not resolve host|Failed to connect|Connection refused|Couldn't connect|"
            r"Could not connect|Connection reset|Network is unreachable|No route to host|"
            r"Empty reply from server|returned error: 50\d|SSL|unable to access",
            re.I,
        ),
    ),
    (
        SourceErrorKind.NOT_FOUND,
        "branch or revision not found",
        re.compile(r"couldn't find remote ref|not our ref|unknown revision|no such ref|bad revision", re.I),
    ),
    (
        SourceErrorKind.NOT_A_REPO,
        "not a git repository",
        re.compile(
            r"does not appear to be a git repository|not a git repository|repository .* not found|"
            r"returned error: 404|not found",
            re.I,
        ),
    ),
)


def _detail(text: str) -> str:
    """The informative lines of git's output as one line: its fatal/error lines when it printed any."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("hint:")]
    important = [line for line in lines if line.startswith(("fatal:", "error:", "!", "remote: error"))]
    detail = "; ".join((important or lines)[-4:])
    return detail[:600]


def classify(result: Result, what: str) -> SourceError:
    """Turn a failed git command into a SourceError whose first words say what to do about it."""
    text = result.output
    for kind, summary, pattern in _PATTERNS:
        if pattern.search(text):
            return SourceError(f"{what} failed: {summary}: {_detail(text)}", kind)
    return SourceError(f"{what} failed (exit {result.status}): {_detail(text) or 'no output'}")
