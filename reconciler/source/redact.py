"""Remove secrets from anything that could be printed, logged or written.

Git's own messages rarely contain a token (we never put one on a command line or in a URL), but a
user may hand us ``https://user:token@host/repo``, and environment-driven tracing could echo an
``Authorization`` header. Every message leaving the source stage is passed through a
:class:`Redactor` so one forgotten code path cannot leak a credential into CI logs or status files.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"

# Userinfo in URLs: any userinfo for http(s)/ftp(s) (a bare token is often passed as the user name),
# and a ``user:password`` pair for every other scheme (``ssh://git@host`` keeps its harmless user).
_HTTP_USERINFO = re.compile(r"(?i)\b((?:https?|ftps?)://)[^/@\s'\"]+@")
_ANY_PASSWORD = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s:'\"]*:[^/@\s'\"]*@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*(?:basic|bearer|token)\s+)\S+")


def redact_url(text: str) -> str:
    """Mask credentials embedded in URLs and HTTP auth headers (no secret needs to be known)."""
    text = _HTTP_USERINFO.sub(rf"\1{MASK}@", text)
    text = _ANY_PASSWORD.sub(rf"\1{MASK}@", text)
    return _AUTH_HEADER.sub(rf"\1{MASK}", text)


class Redactor:
    """Masks known secrets (and their URL-encoded and Basic-auth forms) plus URL credentials."""

    def __init__(self, secrets: Iterable[str] = (), username: str = "") -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret, username)

    def add(self, secret: str, username: str = "") -> None:
        if not secret:
            return
        self._secrets.add(secret)
        self._secrets.add(urllib.parse.quote(secret, safe=""))
        if username:
            basic = base64.b64encode(f"{username}:{secret}".encode()).decode()
            self._secrets.add(basic)

    def __call__(self, text: object) -> str:
        out = str(text)
        # Longest first, so a secret that contains another is masked whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(secret, MASK)
        return redact_url(out)
