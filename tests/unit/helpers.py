"""Small helpers for unit tests: write policy trees into tmp dirs and load them."""

from __future__ import annotations

import shutil
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

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


class LoopbackHTTPServer:
    """A standard-library HTTP server on 127.0.0.1, serving from a daemon thread while in a ``with``.
    ``server``: a ThreadingHTTPServer subclass (to watch connections close, say)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], server: type[ThreadingHTTPServer] = ThreadingHTTPServer
    ) -> None:
        self.httpd = server(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
