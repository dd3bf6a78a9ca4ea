"""The ``reconciler`` typer application and its entry point.

Habits follow kubectl: ``--context``/``--kubeconfig``, ``-o text|json|yaml``, and exit codes that a
scheduler or CI can act on (:class:`reconciler.errors.ExitCode`; per command in the README).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer

from reconciler import __version__
from reconciler.commands.config import config
from reconciler.commands.envoy_config import envoy_config
from reconciler.commands.impact import impact
from reconciler.commands.render import explain, render
from reconciler.commands.snapshot import snapshot
from reconciler.commands.sync import diff, reconcile, serve
from reconciler.commands.validate import schema, validate
from reconciler.errors import ExitCode
from reconciler.output import print_error, print_version
from reconciler.reconcile import unexpected_error
from reconciler.settings import env_name

COMMANDS: dict[str, Callable[..., Any]] = {
    "validate": validate,
    "schema": schema,
    "render": render,
    "explain": explain,
    "envoy-config": envoy_config,
    "snapshot": snapshot,
    "diff": diff,
    "impact": impact,
    "reconcile": reconcile,
    "serve": serve,
    "config": config,
}


def _version(value: bool) -> None:
    if value:
        print_version(__version__)
        raise typer.Exit(ExitCode.OK)


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """mesh-reconciler."""


def build_app(only: str | None = None) -> typer.Typer:
    """The CLI: every command, or only the one named ``only`` (what :func:`main` runs)."""
    cli = typer.Typer(
        name="reconciler",
        help="GitOps reconciler for locality-aware multi-cluster service-mesh policy (Gloo Mesh API -> Istio).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    cli.callback()(_root)
    for name, command in COMMANDS.items():
        if only is None or name == only:
            cli.command(name)(command)
    return cli


app = build_app()


def _invoked(args: list[str]) -> str | None:
    """The command a command line runs, when it names one (the root takes no option with a value,
    so it is the first argument that is not an option); None for ``--help``, ``--version`` or a
    name that is not a command (click then lists the commands, as usual)."""
    name = next((a for a in args if not a.startswith("-")), None)
    return name if name in COMMANDS else None


def main() -> None:
    """Entry point: an exception no command foresaw is fatal (exit 2) with one line, never a traceback
    and never exit 1 (which schedulers read as "degraded, everything else converged")."""
    # One command is one pass, then the process exits: the cyclic collector would only re-walk the
    # growing heap of plain dicts a pass builds (a quarter of a no-op pass's CPU at 1,000 services),
    # and nothing it could free outlives the process. It stays off to the end: switched back on, it
    # would scan the whole heap once more just before exit (0.2 s). `serve` turns it back on itself.
    # (The console script already paused it before importing this module: reconciler/__main__.py.)
    gc.disable()
    # Typer builds the click command of every registered command on each run (~12 ms for the eleven,
    # with their options, against ~3 ms for one): a pass builds only its own, and behaves exactly as
    # the full app would (tests/unit/test_cli_options.py compares each command's help and options).
    invoked = _invoked(sys.argv[1:])
    try:
        (build_app(invoked) if invoked else app)()
    except Exception as exc:
        logging.getLogger("reconciler").debug("unexpected error", exc_info=True)
        if os.environ.get(env_name("log_level"), "").lower() == "debug":
            traceback.print_exc()
        print_error(unexpected_error(exc))
        sys.exit(ExitCode.FATAL)
