"""Exit codes and the base class of every error the reconciler expects and reports in one line.

Exit codes are stable; the CronJob, CI and ``kubectl``-habituated users act on them:

====  ==============================================================================================
0     OK: valid / converged / no differences
1     DEGRADED: some policy invalid, some object rejected or some cluster unreachable (everything
      else was reconciled); for ``diff``: something differs
2     FATAL: nothing was applied — bad configuration, git failure, the run Lease held by another run,
      the management cluster unreachable, or an unexpected error (a bug)
====  ==============================================================================================
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    DEGRADED = 1
    FATAL = 2


class ReconcilerError(Exception):
    """An error we foresaw: its message is the one line the user sees (exit 2 when it ends a command).

    Every stage's own errors derive from it (git, kube contexts, snapshots, the Lease, explain), so
    a command handles "an expected failure" in one ``except`` and anything else is a bug.
    """
