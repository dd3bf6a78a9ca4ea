"""Credentials for git, handed over so that they can never end up in a log or on disk.

HTTPS tokens reach git through ``GIT_ASKPASS``: a tiny script (which itself contains no secret)
prints the token from an environment variable that exists only in the child git process. The token
is therefore never part of a URL, a command line (visible in ``ps`` and in GitPython's debug log) or
``.git/config``. Configured credential helpers are switched off while we hold a token, so a global
``credential.helper=store`` cannot persist it either.

SSH uses ``GIT_SSH_COMMAND`` with an explicit key, an explicit ``known_hosts`` file and
``StrictHostKeyChecking=yes``: a policy repository decides what runs in every cluster, so we refuse
to talk to a host whose key we were not told about.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.source.errors import SourceError, SourceErrorKind
from reconciler.source.redact import Redactor

USERNAME_VAR = "MESH_RECONCILER_GIT_USERNAME"
PASSWORD_VAR = "MESH_RECONCILER_GIT_PASSWORD"

_ASKPASS_SCRIPT = f"""#!/bin/sh
# mesh-reconciler askpass helper: answers git's prompts from the environment (holds no secret).
case "$1" in
  Username*|username*) printf '%s\\n' "${USERNAME_VAR}" ;;
  *) printf '%s\\n' "${PASSWORD_VAR}" ;;
esac
"""

# Tracing would print request headers to stderr, which ends up in our errors. (GIT_CURL_VERBOSE is
# not listed: git enables it whenever it is set at all, even to "0"; GIT_TRACE_REDACT covers it.)
_TRACE_VARS = (
    "GIT_TRACE",
    "GIT_TRACE_CURL",
    "GIT_TRACE_PACKET",
    "GIT_TRACE_PACK_ACCESS",
    "GIT_TRACE_SETUP",
    "GIT_TRACE2",
    "GIT_TRACE2_EVENT",
    "GIT_TRACE2_PERF",
)

LOW_SPEED_LIMIT = 1000
"""Bytes per second below which an HTTP transfer counts as stalled..."""
LOW_SPEED_TIME = 30
"""...for this many seconds, after which git gives up (a hung server must not hang the run)."""
SSH_CONNECT_TIMEOUT = 15


@dataclass(frozen=True)
class GitAuth:
    """How to authenticate to the policy repository. Holds references to secrets, never secrets.

    ``token_env`` names an environment variable and ``token_file`` a mounted file (a Kubernetes
    Secret volume); the token is read only when a git command needs it. ``username`` is what is sent
    alongside an HTTPS token (GitHub ignores it, GitLab wants ``oauth2`` for OAuth tokens, Bitbucket
    ``x-token-auth``).
    """

    token_env: str | None = None
    token_file: Path | None = None
    username: str = "x-access-token"
    ssh_key_file: Path | None = None
    known_hosts_file: Path | None = None
    strict_host_key_checking: bool = True

    def __post_init__(self) -> None:
        if self.token_env and self.token_file:
            raise ValueError("give either token_env or token_file, not both")

    @property
    def has_token(self) -> bool:
        return bool(self.token_env or self.token_file)

    def read_token(self) -> str | None:
        """The HTTPS token, or None when none is configured. Errors name the source, not the value."""
        if self.token_env:
            value = os.environ.get(self.token_env, "")
            if not value.strip():
                raise SourceError(
                    f"git token environment variable {self.token_env} is not set or empty",
                    SourceErrorKind.CONFIG,
                )
            return value.strip()
        if self.token_file:
            try:
                value = self.token_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
                raise SourceError(
                    f"cannot read git token file {self.token_file}: {reason}", SourceErrorKind.CONFIG
                ) from None
            if not value.strip():
                raise SourceError(f"git token file {self.token_file} is empty", SourceErrorKind.CONFIG)
            return value.strip()
        return None


@dataclass(frozen=True)
class Credentials:
    """A username/password pair taken out of a user-supplied URL (never stored in .git/config)."""

    username: str
    password: str = field(repr=False)


@dataclass
class GitSession:
    """The environment for the git processes of one operation, and the redactor for its output."""

    env: dict[str, str]
    redact: Redactor


def _ssh_command(auth: GitAuth | None) -> str | None:
    """GIT_SSH_COMMAND: batch mode always (never prompt in a daemon), key and host pinning if given."""
    if auth is None or auth.ssh_key_file is None:
        if os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH"):
            return None  # the operator configured ssh themselves
        return f"ssh -o BatchMode=yes -o ConnectTimeout={SSH_CONNECT_TIMEOUT}"
    parts = [
        "ssh",
        "-i",
        str(auth.ssh_key_file),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
        "-o",
        f"StrictHostKeyChecking={'yes' if auth.strict_host_key_checking else 'accept-new'}",
    ]
    if auth.known_hosts_file is not None:
        parts += ["-o", f"UserKnownHostsFile={auth.known_hosts_file}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return " ".join(shlex.quote(p) for p in parts)


def _config_env(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Per-process git config through GIT_CONFIG_COUNT (git >= 2.31): never on a command line."""
    env = {"GIT_CONFIG_COUNT": str(len(pairs))}
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


@contextmanager
def git_session(auth: GitAuth | None, url_credentials: Credentials | None = None) -> Iterator[GitSession]:
    """Yield the environment for git commands; the askpass helper is deleted on exit."""
    if auth is not None and auth.ssh_key_file is not None and not auth.ssh_key_file.is_file():
        raise SourceError(f"ssh key file {auth.ssh_key_file} does not exist", SourceErrorKind.CONFIG)
    if auth is not None and auth.known_hosts_file is not None and not auth.known_hosts_file.is_file():
        raise SourceError(f"known_hosts file {auth.known_hosts_file} does not exist", SourceErrorKind.CONFIG)

    token = auth.read_token() if auth is not None else None
    username = auth.username if auth is not None else ""
    if token is None and url_credentials is not None:
        token, username = url_credentials.password, url_credentials.username
    redactor = Redactor([token] if token else [], username=username)

    config = [
        ("gc.autoDetach", "false"),  # no background gc outliving the run
        ("commit.gpgSign", "false"),  # a global signing setting must not break status commits
        ("core.hooksPath", os.devnull),  # never run hooks from a global config in our cache
        ("advice.detachedHead", "false"),
    ]
    env: dict[str, str] = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_TRACE_REDACT": "1",
        "GIT_HTTP_LOW_SPEED_LIMIT": str(LOW_SPEED_LIMIT),
        "GIT_HTTP_LOW_SPEED_TIME": str(LOW_SPEED_TIME),
    }
    env.update(dict.fromkeys(_TRACE_VARS, "0"))
    ssh = _ssh_command(auth)
    if ssh is not None:
        env["GIT_SSH_COMMAND"] = ssh

    helper_dir: str | None = None
    try:
        if token:
            helper_dir = tempfile.mkdtemp(prefix="mesh-reconciler-askpass-")
            script = Path(helper_dir) / "askpass.sh"
            script.write_text(_ASKPASS_SCRIPT, encoding="utf-8")
            script.chmod(stat.S_IRWXU)
            env.update({"GIT_ASKPASS": str(script), USERNAME_VAR: username or "git", PASSWORD_VAR: token})
            config.append(("credential.helper", ""))  # empty value resets the helper list: nothing stores it
        env.update(_config_env(config))
        yield GitSession(env=env, redact=redactor)
    finally:
        if helper_dir is not None:
            shutil.rmtree(helper_dir, ignore_errors=True)
