"""The human view of a change set (``diff``/``reconcile -o text``): the same text with or without a
terminal, printed verbatim, and cheap enough for a first sync's quarter of a million lines."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import cast

import pytest
from rich.console import Console

from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.output import RECONCILE_DIFFS, OutputFormat, print_changeset, print_reconcile
from reconciler.reconcile import ReconcileOutcome

LIVE = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "spec": {"host": "a.global"}}
DESIRED = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    # markup and an emoji code inside a value: printed as they are, never interpreted
    "spec": {"host": "a.global", "subsets": [{"name": "[bold]v1[/bold] :thumbs_up:"}]},
}


def _changes() -> ChangeSet:
    def change(action: Action, name: str, compared: tuple[dict, dict] | None, **kw: object) -> ObjectChange:
        return ObjectChange(
            cluster="c1",
            kind="DestinationRule",
            namespace="ns",
            name=name,
            action=action,
            compared=compared,
            **kw,  # type: ignore[arg-type]
        )

    result = ClusterResult(
        "c1",
        changes=[
            change(Action.UNCHANGED, "same", None),
            change(
                Action.CONFIGURE,
                "drifted",
                (LIVE, DESIRED),
                changed_paths=["spec.subsets"],
                previous_managers=["kubectl-edit"],
            ),
            change(
                Action.CONFLICT, "theirs", None, message="exists without our markers [see --adopt]\x07\tx"
            ),
        ],
        notes=["a note"],
    )
    return ChangeSet(
        dry_run=True,
        clusters={"c1": result, "c0": ClusterResult("c0", error="connection refused")},
    )


EXPECTED = """\
cluster c0: unreachable: connection refused
cluster c1: ~ 1 configured, = 1 unchanged, x 1 conflict
  ~ configured DestinationRule/ns/drifted  (spec.subsets)
      fields taken over from: kubectl-edit
      --- live/DestinationRule/ns/drifted
      +++ desired/DestinationRule/ns/drifted
      @@ -2,3 +2,5 @@
       kind: DestinationRule
       spec:
         host: a.global
      +  subsets:
      +  - name: '[bold]v1[/bold] :thumbs_up:'
  x conflict DestinationRule/ns/theirs
      exists without our markers [see --adopt]  x
  a note
total: 0 created, 1 configured, 0 pruned, 1 unchanged, 0 held, 1 conflict, 0 failed (dry run)
"""


def test_plain_text_without_a_terminal() -> None:
    out = io.StringIO()
    print_changeset(Console(file=out, highlight=False, soft_wrap=True), _changes())
    assert out.getvalue() == EXPECTED


def test_a_terminal_gets_the_same_text_in_colour() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", highlight=False, soft_wrap=True)
    print_changeset(console, _changes())
    coloured = out.getvalue()
    assert "\x1b[32m" in coloured  # green "+" lines
    assert "\x1b[31m" in coloured  # red "unreachable"
    assert _strip_ansi(coloured) == EXPECTED


def test_no_colour_prints_through_the_file_not_rich() -> None:
    """Without colours, rich is never asked to render a line (each costs ~0.07 ms; a first sync at
    K=1000 prints ~250,000): the counter would see every call."""
    calls = 0

    class Counting(Console):
        def print(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
            nonlocal calls
            calls += 1
            super().print(*args, **kwargs)  # type: ignore[arg-type]

    flushed_at: list[int] = []

    class Flushes(io.StringIO):
        def flush(self) -> None:
            flushed_at.append(len(self.getvalue()))

    out = Flushes()
    print_changeset(Counting(file=out, highlight=False, soft_wrap=True), _changes())
    assert calls == 0
    assert out.getvalue() == EXPECTED
    assert flushed_at and flushed_at[-1] == len(EXPECTED)  # flushed after the last line, as rich does


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_reconcile_prints_the_diff_of_a_configured_object_only() -> None:
    """A created object's diff is the whole object: ``reconcile`` prints its line alone, ``diff``
    prints both diffs."""
    changes = _changes()
    created = ObjectChange("c1", "DestinationRule", "ns", "new", Action.CREATE, compared=({}, DESIRED))
    changes.clusters["c1"].changes.insert(0, created)
    out = io.StringIO()
    print_changeset(Console(file=out, highlight=False, soft_wrap=True), changes, diffs=RECONCILE_DIFFS)
    text = out.getvalue()
    assert "  + created DestinationRule/ns/new\n  ~ configured" in text
    assert "desired/DestinationRule/ns/new" not in text
    assert "+++ desired/DestinationRule/ns/drifted" in text
    everything = io.StringIO()
    print_changeset(Console(file=everything, highlight=False, soft_wrap=True), changes)
    assert "+++ desired/DestinationRule/ns/new" in everything.getvalue()


def test_reconcile_output_leaves_out_created_diffs(capsys: pytest.CaptureFixture[str]) -> None:
    """What ``reconcile`` prints (``print_reconcile``): the configured object's diff, not the
    created one's, then where the status went."""
    changes = _changes()
    changes.clusters["c1"].changes.insert(
        0, ObjectChange("c1", "DestinationRule", "ns", "new", Action.CREATE, compared=({}, DESIRED))
    )
    outcome = SimpleNamespace(
        result=SimpleNamespace(changes=changes, shard=None), checkout=None, status_commit="0123456789abcdef"
    )
    print_reconcile(cast(ReconcileOutcome, outcome), OutputFormat.TEXT)
    text = capsys.readouterr().out
    assert "  + created DestinationRule/ns/new\n  ~ configured DestinationRule/ns/drifted" in text
    assert "desired/DestinationRule/ns/new" not in text
    assert "+++ desired/DestinationRule/ns/drifted" in text
    assert text.endswith("status committed: 0123456789ab\n")
