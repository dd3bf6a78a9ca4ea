"""``impact``: what a change to the policy repository does to traffic, for a pull-request review."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from reconciler.commands import options as opt
from reconciler.commands.common import fail, open_plan, require_dir
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.output import ReportFormat, print_cluster_problems
from reconciler.plan import build_plan
from reconciler.reconcile import cluster_source

if TYPE_CHECKING:
    from reconciler.impact import RevisionInfo


def impact(
    path: opt.PathArg = Path("."),
    base: opt.BaseOpt = "",
    head: opt.HeadOpt = None,
    state: opt.StateOpt = None,
    kubeconfig: opt.KubeconfigOpt = None,
    context: opt.ContextOpt = None,
    in_cluster: opt.InClusterOpt = opt.DEFAULTS.in_cluster,
    request_timeout: opt.RequestTimeoutOpt = opt.DEFAULTS.request_timeout,
    output: opt.ReportOutputOpt = ReportFormat.TEXT,
) -> None:
    """Compare two revisions of the policy repository against the same live state: per hostname and
    client locality, the failover order before and after; policies and objects that change; risks.

    --base (and --head) name a git ref of the repository holding PATH, or a policy directory; without
    --head, PATH as it is on disk is the head. Exit codes: 0 no traffic change, 1 traffic changes,
    2 error (unknown revision, unreadable state, a cluster that could not be read).
    """
    if not base:
        fail("--base REF|DIR is required (the revision before the change, e.g. --base origin/main)")
    # Here, not at the top: every command's start-up would otherwise pay for the data-plane model.
    from reconciler.impact import RevisionInfo, compare
    from reconciler.impact_output import print_impact

    settings = opt.make_settings(
        opt.ClusterOptions(
            kubeconfig=kubeconfig, context=context, in_cluster=in_cluster, request_timeout=request_timeout
        )
    )
    with ExitStack() as stack:
        base_dir, base_info = stack.enter_context(_revision(path, base))
        if head is None:
            require_dir(path)
            head_dir, head_info = path, RevisionInfo(f"{path} (working tree)")
        else:
            head_dir, head_info = stack.enter_context(_revision(path, head))
        head_plan, effective = stack.enter_context(open_plan(head_dir, settings, state, keep_raw=True))
        print_cluster_problems(head_plan.inventory)
        # The base is planned against the very same live state: the snapshot again, or the objects
        # discovery just listed for the head (no second LIST).
        raw = head_plan.discovery.raw if head_plan.discovery is not None else None
        try:
            base_plan = stack.enter_context(
                build_plan(base_dir, cluster_source(effective, state), cached=raw)
            )
        except (ReconcilerError, OSError) as exc:
            fail(f"base {base}: {exc}")
        where = (
            f"snapshot {state}"
            if state is not None
            else "clusters " + ", ".join(sorted(head_plan.inventory.clusters))
        )
        report = compare(base_plan, head_plan, base_info, head_info, where)
        print_impact(report, output)
    if report.incomplete:
        raise typer.Exit(ExitCode.FATAL)
    raise typer.Exit(ExitCode.DEGRADED if report.traffic_changed else ExitCode.OK)


@contextmanager
def _revision(path: Path, ref: str) -> Iterator[tuple[Path, RevisionInfo]]:
    """A policy directory given as such, or the directory ``path`` at git revision ``ref``."""
    from reconciler.impact import RevisionInfo

    as_dir = Path(ref)
    if as_dir.is_dir():
        yield as_dir, RevisionInfo(str(as_dir))
        return
    from reconciler.source.revision import materialize  # git only when a ref is given (start-up cost)

    with ExitStack() as stack:
        try:
            tree = stack.enter_context(materialize(path, ref))
        except ReconcilerError as exc:
            fail(f"--base/--head {ref}: {exc}")
        yield tree.path, RevisionInfo(ref, tree.sha)
