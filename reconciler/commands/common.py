"""What every command does the same way: fail with one line and exit 2, open the plan, parse --from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer

from reconciler.buildcache import tree_build_cache
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.locality import Locality
from reconciler.output import print_error
from reconciler.plan import Plan, build_plan
from reconciler.reconcile import cluster_source
from reconciler.repo_config import load_repo_config
from reconciler.settings import Settings


def fail(message: str) -> NoReturn:
    """An expected failure: ``error: message`` on stderr, exit 2."""
    print_error(message)
    raise typer.Exit(ExitCode.FATAL)


def require_dir(path: Path) -> None:
    if not path.is_dir():
        fail(f"{path}: not a readable directory")


@contextmanager
def open_plan(
    path: Path, settings: Settings, state: Path | None, keep_raw: bool = False, build_cache: bool = False
) -> Iterator[tuple[Plan, Settings]]:
    """The plan of the policy directory ``path`` (closed when the block ends), with ``settings``
    resolved against its reconciler.yaml (``keep_raw``: see :attr:`ClusterSource.keep_raw`).

    ``build_cache``: reuse the last build of ``path`` while its files and the discovered state are
    unchanged, kept where ``settings.build_cache_for`` says (see :mod:`reconciler.buildcache`).

    An expected error — a :class:`ReconcilerError` (bad context, snapshot, VirtualDestination, ...)
    or an ``OSError``, while planning or in the block — is one line on stderr and exit 2.
    """
    require_dir(path)
    try:
        repo, _ = load_repo_config(path)  # its findings are the plan's too
        effective = settings.resolved(repo)
        directory = effective.build_cache_for(path) if build_cache else None
        cache = tree_build_cache(path, repo.status.path, directory) if directory is not None else None
        with build_plan(path, cluster_source(effective, state, keep_raw), build_cache=cache) as plan:
            yield plan, effective
    except (ReconcilerError, OSError) as exc:
        fail(str(exc))


def client_locality(text: str) -> Locality:
    client = Locality.parse(text)
    if client is None:
        fail("--from REGION[/ZONE[/SUBZONE]] is required")
    return client
