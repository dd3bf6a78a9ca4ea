"""The one exception the source stage raises.

Callers treat any :class:`SourceError` as "we do not know the desired state": they exit 2 and never
apply or prune, because stale or empty content would make the reconciler delete what users still
want. The message is already redacted, so it can be printed and logged as it is.
"""

from __future__ import annotations

import enum

from reconciler.errors import ReconcilerError


class SourceErrorKind(enum.StrEnum):
    UNREACHABLE = "unreachable"
    """The server could not be reached (DNS, connection refused, TLS, timeout)."""
    AUTH = "auth"
    """The server refused our credentials, or none were available."""
    NOT_FOUND = "not-found"
    """The branch or revision does not exist (any more)."""
    NOT_A_REPO = "not-a-repo"
    """The URL or path does not point at a Git repository."""
    PUSH_REJECTED = "push-rejected"
    """The server kept refusing our status push (the branch moved every time, or a hook refused)."""
    CONFIG = "config"
    """Our own settings are unusable: token file missing, cache dir is someone else's directory."""
    LOCAL = "local"
    """A local git operation failed (corrupt cache, disk full)."""


class SourceError(ReconcilerError):
    """Fetching policy or pushing status failed; ``str(err)`` is redacted and says what to fix."""

    def __init__(self, message: str, kind: SourceErrorKind = SourceErrorKind.LOCAL) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def message(self) -> str:
        return str(self.args[0])
