"""The console script ends without the interpreter's teardown (``reconciler.__main__.exit_now``):
everything a process owes on the way out must still happen — real subprocesses, real pipes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.unit.helpers import EXAMPLE, cli

STATE = EXAMPLE.parent / "tests" / "golden" / "state" / "bookinfo"


def run(*args: str, tmp: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout block-buffered
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_buffered_output_reaches_a_pipe_whole() -> None:
    """A pipe is block-buffered: the output is flushed before the process ends."""
    done = run("render", str(EXAMPLE), "--state", str(STATE), "-o", "json")
    assert done.returncode == 0, done.stderr
    _, expected, _ = cli("render", str(EXAMPLE), "--state", str(STATE), "-o", "json")
    assert json.loads(done.stdout) == json.loads(expected)
    assert done.stdout.endswith("}\n")


def test_exit_status_and_message_are_the_commands() -> None:
    done = run("explain", "nope", str(EXAMPLE), "--from", "us-east-1", "--state", str(STATE))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: VirtualDestination nope not found"), done.stderr
    diff = run("diff", str(EXAMPLE), "--state", str(STATE), "-o", "json")
    assert diff.returncode == 1 and json.loads(diff.stdout)["summary"] == {"created": 5}


def test_atexit_handlers_still_run(tmp_path: Path) -> None:
    """The kubernetes client writes a kubeconfig's inline certificate data to temporary files and
    deletes them in an ``atexit`` handler: none is left behind."""
    kubeconfig = tmp_path / "kubeconfig"
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:9",
                            "certificate-authority-data": ca.decode(),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = run("diff", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--context", "ctx", tmp=temp)
    assert done.returncode > 1, done.stderr
    assert "context ctx" in done.stderr, done.stderr  # the context that could not be used is named
    assert list(temp.iterdir()) == []


EXIT_NOW = """
import atexit, sys
from reconciler.__main__ import exit_now
atexit.register(lambda: sys.stdout.write("atexit ran\\n"))
sys.stdout.write("x" * 100 + "\\n")
sys.stderr.write("unflushed")
exit_now(eval(sys.argv[1]))
"""


def test_exit_now_flushes_runs_atexit_and_keeps_sys_exit_semantics() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    for code, status, err in ((None, 0, "unflushed"), (3, 3, "unflushed"), ("'bad'", 1, "bad\n")):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_NOW, str(code)], capture_output=True, text=True, env=env, check=False
        )
        assert done.returncode == status
        assert done.stdout == "x" * 100 + "\natexit ran\n"  # written after the handlers, then flushed
        assert done.stderr.startswith("unflushed") and done.stderr.endswith(err)
