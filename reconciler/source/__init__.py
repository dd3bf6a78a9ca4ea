"""Source stage: fetch policy from Git into a clean cache, and commit status reports back.

``fetch`` gives a :class:`Checkout` whose ``policy_commit`` ignores our own status commits (so
writing status never looks like a new desired state). ``commit_status`` pushes status without force,
rebuilding on top of anyone who pushed meanwhile. Every failure is a redacted :class:`SourceError`:
the caller must then stop before applying or pruning anything.
"""

from __future__ import annotations

from reconciler.source.auth import Credentials, GitAuth
from reconciler.source.checkout import Checkout, fetch, normalize_url
from reconciler.source.commit import commit_status
from reconciler.source.errors import SourceError, SourceErrorKind
from reconciler.source.redact import Redactor, redact_url

__all__ = [
    "Checkout",
    "Credentials",
    "GitAuth",
    "Redactor",
    "SourceError",
    "SourceErrorKind",
    "commit_status",
    "fetch",
    "normalize_url",
    "redact_url",
]
