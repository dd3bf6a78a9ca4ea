"""What a command imports before it runs: a CronJob pays the start-up of every pass, so the heavy
libraries are imported by the stages that use them, never by the CLI itself."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.unit.helpers import EXAMPLE

HEAVY = ("kubernetes", "requests", "oauthlib", "urllib3", "git", "rich", "deepdiff")


def imported_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_cli_imports_no_client_library() -> None:
    """The kubernetes client (with requests and oauthlib: ~85 ms), GitPython (which runs `git version`
    twice when imported), rich and DeepDiff are not imported by the CLI or its option parsing."""
    loaded = imported_after("import reconciler.commands.app")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_validate_imports_neither_the_kubernetes_client_nor_git() -> None:
    loaded = imported_after(
        f"from typer.testing import CliRunner\n"
        f"from reconciler.commands.app import build_app\n"
        f"result = CliRunner().invoke(build_app('validate'), ['validate', {str(EXAMPLE)!r}, '-o', 'json'])\n"
        f"assert result.exit_code == 0, result.output"
    )
    assert not loaded & {"kubernetes", "requests", "oauthlib", "git"}
