"""An exception no command foresaw exits 2 (fatal) with one line — never 1, never a traceback.

The bug is a fake (``fake_bug``): a real one cannot be produced on purpose.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reconciler.commands.validate
from reconciler.commands.app import main

EXAMPLE = Path(__file__).resolve().parents[2] / "policies"


def fake_bug(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("spec")


@pytest.fixture(autouse=True)
def collector_back_on() -> Iterator[None]:
    """``main`` leaves the cyclic GC off (the process is about to exit); this process is not."""
    yield
    assert not gc.isenabled(), "main() runs its one command with the cyclic collector off"
    gc.enable()


@pytest.mark.parametrize("debug", [False, True])
def test_unexpected_exception_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], debug: bool
) -> None:
    monkeypatch.setattr(reconciler.commands.validate, "load_and_check", fake_bug)
    monkeypatch.setattr(sys, "argv", ["reconciler", "validate", str(EXAMPLE)])
    if debug:
        monkeypatch.setenv("RECONCILER_LOG_LEVEL", "debug")
    else:
        monkeypatch.delenv("RECONCILER_LOG_LEVEL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: unexpected KeyError: 'spec'") and "--log-level debug" in last
    assert ("Traceback" in err) is debug  # the traceback only when asked for
