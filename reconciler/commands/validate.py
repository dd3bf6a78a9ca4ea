"""``validate`` (every problem of a policy repository at once) and ``schema`` (for editors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reconciler.commands import options as opt
from reconciler.commands.common import fail, require_dir
from reconciler.errors import ExitCode
from reconciler.output import OutputFormat, dump_json, print_validation, print_written
from reconciler.policy import POLICY_KINDS, load_and_check
from reconciler.repo_config import load_repo_config


def validate(path: opt.PathArg = Path("."), output: opt.OutputOpt = OutputFormat.TEXT) -> None:
    """Validate every policy under PATH; report every problem at once.

    Exit codes: 0 all valid, 1 some policy invalid, 2 PATH cannot be read.
    """
    require_dir(path)
    config, config_findings = load_repo_config(path)
    try:
        policies = load_and_check(path, status_path=config.status.path)
    except OSError as exc:
        fail(f"cannot read {path}: {exc}")
    findings = config_findings + policies.findings
    print_validation(policies, findings, output)
    raise typer.Exit(ExitCode.DEGRADED if any(f.is_error for f in findings) else ExitCode.OK)


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
        print_written(target)
