"""Small helpers for unit tests: write policy trees into tmp dirs and load them."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from reconciler.commands.app import app
from reconciler.policy import PolicySet, load_and_check

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def copy_example(tmp: Path) -> Path:
    dest = tmp / "repo"
    shutil.copytree(EXAMPLE, dest)
    return dest


def load(root: Path) -> PolicySet:
    return load_and_check(root)


def messages(ps: PolicySet) -> list[str]:
    return sorted(f.format() for f in ps.findings)


def cli(*args: str) -> tuple[int, str, str]:
    """The real CLI in-process (wide, uncoloured output): exit code, stdout, stderr."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.exit_code, result.stdout, result.stderr
