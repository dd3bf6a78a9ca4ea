"""The ``reconciler`` command line: thin commands that wire the pipeline stages together.

Habits follow kubectl: ``--context``/``--kubeconfig``, ``-o text|json|yaml``, and exit codes that a
scheduler or CI can act on (documented per command and in the README).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reconciler import __version__
from reconciler.output import (
    OutputFormat,
    dump_json,
    print_findings,
    sort_findings,
    stderr_console,
    stdout_console,
)
from reconciler.policy import POLICY_KINDS, load_and_check
from reconciler.repo_config import load_repo_config

app = typer.Typer(
    name="reconciler",
    help="GitOps reconciler for locality-aware multi-cluster service-mesh policy (Gloo Mesh API -> Istio).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_FATAL = 2

PathArg = Annotated[Path, typer.Argument(help="Policy directory (a checkout of the policy repository).")]
OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="Output format.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """mesh-reconciler."""


@app.command()
def validate(path: PathArg = Path("."), output: OutputOpt = OutputFormat.TEXT) -> None:
    """Validate every policy under PATH; report every problem at once.

    Exit codes: 0 all valid, 1 some policy invalid, 2 PATH cannot be read.
    """
    err = stderr_console()
    if not path.is_dir():
        err.print(f"error: {path}: not a readable directory")
        raise typer.Exit(EXIT_FATAL)
    config, config_findings = load_repo_config(path)
    try:
        policies = load_and_check(path, status_path=config.status.path)
    except OSError as exc:
        err.print(f"error: cannot read {path}: {exc}")
        raise typer.Exit(EXIT_FATAL) from None
    findings = config_findings + policies.findings
    errors = [f for f in findings if f.is_error]
    warnings = [f for f in findings if not f.is_error]
    if output is OutputFormat.TEXT:
        out = stdout_console()
        print_findings(out, findings)
        by_kind: dict[str, int] = {}
        for p in policies.policies:
            by_kind[p.obj.kind] = by_kind.get(p.obj.kind, 0) + 1
        counts = ", ".join(f"{n} {k}" for k, n in sorted(by_kind.items())) or "no policies"
        verdict = "valid" if not errors else "INVALID"
        out.print(
            f"{verdict}: {counts} valid; {len(policies.invalid)} invalid; "
            f"{len(errors)} error(s), {len(warnings)} warning(s)"
        )
    else:
        payload = {
            "valid": not errors,
            "policies": [
                {
                    "kind": p.obj.kind,
                    "namespace": p.obj.namespace,
                    "name": p.obj.name,
                    "file": p.location.file,
                    "line": p.location.line,
                }
                for p in sorted(policies.policies, key=lambda p: p.key)
            ],
            "invalid": [
                {"kind": k.kind, "namespace": k.namespace, "name": k.name, "file": loc.file, "line": loc.line}
                for k, loc in sorted(policies.invalid.items())
            ],
            "findings": [f.to_dict() for f in sort_findings(findings)],
        }
        if output is OutputFormat.JSON:
            dump_json(payload)
        else:
            from reconciler.output import to_yaml

            typer.echo(to_yaml(payload), nl=False)
    raise typer.Exit(EXIT_INVALID if errors else EXIT_OK)


@app.command()
def schema(
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-d", help="Write <kind>.schema.json files here.")
    ] = None,
) -> None:
    """Write JSON Schemas of VirtualDestination, TrafficPolicy and VirtualMesh (for editors)."""
    schemas = {kind: model.model_json_schema(by_alias=True) for kind, model in POLICY_KINDS.items()}
    if output_dir is None:
        dump_json(schemas)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    for kind, doc in schemas.items():
        target = output_dir / f"{kind.lower()}.schema.json"
        target.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        stdout_console().print(f"wrote {target}")


def main() -> None:
    app()
