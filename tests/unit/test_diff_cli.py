"""`reconciler diff` decides like `reconcile`: the same apply options, the same reconciler.yaml settings.

Live state is a snapshot holding exactly what the bundled example renders (so a plain diff shows
nothing), plus what each test adds: an object carrying only our label (adoption) or an owned object
no policy renders any more (prune). Before diff took the apply options it built its engine options
itself: `--adopt`, `--prune`, `--max-prune-ratio`, `--allow-mass-prune`, `--no-force` and their
RECONCILER_* variables were unknown to it, so it could report a conflict that reconcile would adopt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from reconciler.commands.app import app
from reconciler.plan import ClusterSource, build_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "bookinfo"
OURS = {"app.kubernetes.io/managed-by": "mesh-reconciler"}
SOURCES = "mesh-reconciler.io/sources"


def virtual_service(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    host = f"{name}.bookinfo.svc.cluster.local"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": name,
            "namespace": "bookinfo",
            "labels": dict(OURS),
            "annotations": annotations or {},
        },
        "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]},
    }


def converged_state(directory: Path, extra: list[dict[str, Any]], drop: str = "") -> Path:
    """STATE plus the example's rendered objects (minus ``drop``, a kind/namespace/name) and ``extra``
    in mgmt-cluster, as a snapshot directory."""
    with build_plan(EXAMPLE, ClusterSource(state=STATE)) as plan:
        rendered = {c: [o.body for o in objs] for c, objs in plan.translation.objects.items()}
    directory.mkdir()
    for path in STATE.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        live = [
            o
            for o in rendered.get(path.stem, [])
            if o["kind"] + "/" + o["metadata"]["namespace"] + "/" + o["metadata"]["name"] != drop
        ]
        doc["items"] += live + (extra if path.stem == "mgmt-cluster" else [])
        (directory / path.name).write_text(yaml.safe_dump(doc))
    return directory


def policies(tmp_path: Path, prune: str | None = None) -> Path:
    """A copy of the example; ``prune`` replaces reconciler.yaml's prune section."""
    root = tmp_path / "policies"
    shutil.copytree(EXAMPLE, root)
    if prune is not None:
        config = root / "reconciler.yaml"
        data = yaml.safe_load(config.read_text())
        data["prune"] = yaml.safe_load(prune)
        config.write_text(yaml.safe_dump(data))
    return root


def diff(
    root: Path, state: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(
        app,
        ["diff", str(root), "--state", str(state), "-o", "json", *args],
        env={"COLUMNS": "200", **(env or {})},
    )
    assert result.stdout.startswith("{"), result.output  # not a usage error
    return result.exit_code, json.loads(result.stdout), result.stderr


def action(payload: dict[str, Any], name: str) -> tuple[str, str]:
    [obj] = [
        o
        for c in payload["clusters"]
        for o in c["objects"]
        if o["kind"] == "VirtualService" and o["name"] == name
    ]
    return obj["action"], obj.get("message", "")


def test_converged_state_has_no_differences(tmp_path: Path) -> None:
    code, payload, _ = diff(EXAMPLE, converged_state(tmp_path / "state", []))
    assert (code, payload["summary"]) == (0, {"unchanged": 5})


# --- adoption -------------------------------------------------------------------------------------


@pytest.fixture
def label_only(tmp_path: Path) -> Path:
    """The policy's VirtualService bookinfo/reviews exists, with our label but not our annotation."""
    return converged_state(
        tmp_path / "state", [virtual_service("reviews")], drop="VirtualService/bookinfo/reviews"
    )


def test_object_without_our_markers_is_a_conflict(label_only: Path) -> None:
    code, payload, _ = diff(EXAMPLE, label_only)
    act, message = action(payload, "reviews")
    assert act == "conflict" and "--adopt" in message
    assert code == 2


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_adopt_makes_diff_report_the_adoption_reconcile_would_make(label_only: Path, how: str) -> None:
    if how == "flag":
        code, payload, _ = diff(EXAMPLE, label_only, "--adopt")
    else:
        code, payload, _ = diff(EXAMPLE, label_only, env={"RECONCILER_ADOPT": "true"})
    assert action(payload, "reviews") == ("configured", "adopted (was not managed by mesh-reconciler)")
    assert payload["summary"] == {"configured": 1, "unchanged": 4}
    assert code == 1  # a difference, not an error


# --- prune ----------------------------------------------------------------------------------------


@pytest.fixture
def leftover(tmp_path: Path) -> Path:
    """An object we made (label and annotation) whose policy is gone: reconcile would prune it."""
    owned = virtual_service("legacy", {SOURCES: "TrafficPolicy/bookinfo/deleted-policy"})
    return converged_state(tmp_path / "state", [owned])


def test_leftover_is_pruned_by_default(leftover: Path) -> None:
    code, payload, _ = diff(EXAMPLE, leftover)
    assert action(payload, "legacy")[0] == "pruned"
    assert code == 1


def test_prune_disabled_in_reconciler_yaml_holds(tmp_path: Path, leftover: Path) -> None:
    code, payload, _ = diff(policies(tmp_path, "{enabled: false}"), leftover)
    assert action(payload, "legacy") == ("held", "no longer desired; not pruned (pruning disabled)")
    assert code == 0


@pytest.mark.parametrize(
    ("prune_yaml", "args", "env", "expected"),
    [
        (None, ["--prune=false"], {}, "held"),
        (None, [], {"RECONCILER_PRUNE": "false"}, "held"),
        ("{enabled: false}", ["--prune=true"], {}, "pruned"),  # the flag beats reconciler.yaml
        ("{enabled: false}", [], {"RECONCILER_PRUNE": "true"}, "pruned"),
    ],
)
def test_prune_option_beats_reconciler_yaml(
    tmp_path: Path,
    leftover: Path,
    prune_yaml: str | None,
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    _, payload, _ = diff(policies(tmp_path, prune_yaml), leftover, *args, env=env)
    assert action(payload, "legacy")[0] == expected


def test_max_prune_ratio_and_allow_mass_prune(tmp_path: Path, leftover: Path) -> None:
    # 1 of the 4 objects we own in mgmt-cluster is a quarter: beyond --max-prune-ratio 0.2 ...
    code, payload, _ = diff(EXAMPLE, leftover, "--max-prune-ratio", "0.2")
    act, message = action(payload, "legacy")
    assert act == "failed" and "refusing to prune 1 of 4 objects" in message
    assert code == 2
    # ... as it is with reconciler.yaml's maxPruneRatio ...
    _, payload, _ = diff(policies(tmp_path, "{enabled: true, maxPruneRatio: 0.2}"), leftover)
    assert action(payload, "legacy")[0] == "failed"
    # ... unless mass pruning is allowed.
    _, payload, _ = diff(EXAMPLE, leftover, "--max-prune-ratio", "0.2", "--allow-mass-prune")
    assert action(payload, "legacy")[0] == "pruned"


def test_dry_run_is_not_a_diff_option() -> None:
    """diff never writes: --dry-run (reconcile's) is not accepted rather than silently meaningless."""
    result = CliRunner().invoke(app, ["diff", str(EXAMPLE), "--state", str(STATE), "--dry-run"])
    assert result.exit_code == 2 and "No such option: --dry-run" in result.stderr
