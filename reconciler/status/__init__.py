"""Status stage: per-policy reports (pure ``build_status``) and their files in the status directory.

No git here: :mod:`reconciler.source` commits whatever :func:`write_status_dir` changed.
"""

from __future__ import annotations

from reconciler.status.build import (
    State,
    StatusDoc,
    build_status,
    report_keys,
    status_commit_message,
    status_fingerprints,
    status_summary,
)
from reconciler.status.files import (
    RenderMemo,
    read_status_dir,
    render_readme,
    status_file,
    write_status_dir,
)

__all__ = [
    "RenderMemo",
    "State",
    "StatusDoc",
    "build_status",
    "read_status_dir",
    "render_readme",
    "report_keys",
    "status_commit_message",
    "status_file",
    "status_fingerprints",
    "status_summary",
    "write_status_dir",
]
