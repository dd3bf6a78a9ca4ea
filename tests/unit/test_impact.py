"""``reconciler impact``: two revisions of a real git repository, one live state, what traffic does.

Every scenario is a real repository with two commits (the bundled example plus a failover directive,
then one edit) planned against the three-region snapshot ``tests/golden/state/three-regions``
(the bundled example's two clusters plus ``cluster-3`` in eu-west-1). Regenerate the golden files
after an intended wording change with ``UPDATE_GOLDEN=1 pytest tests/unit/test_impact.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from reconciler.clusters.snapshot import read_snapshot
from reconciler.impact import (
    Client,
    ImpactReport,
    RevisionInfo,
    RiskKind,
    Route,
    RouteChangeKind,
    RouteEndpoint,
    compare,
    route_risks,
)
from reconciler.impact_output import render_markdown, render_text
from reconciler.locality import Locality
from reconciler.plan import ClusterSource, build_plan
from tests.unit.helpers import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "three-regions"
TWO_CLUSTERS = REPO / "tests" / "golden" / "state" / "bookinfo"
GOLDEN = REPO / "tests" / "golden" / "impact"
SCHEMA = json.loads((REPO / "docs" / "impact.schema.json").read_text())

US_EAST_1 = "us-east-1/us-east-1a (mgmt-cluster)"
US_EAST_2 = "us-east-2/us-east-2b (remote-cluster)"
EU_WEST_1 = "eu-west-1/eu-west-1a (cluster-3)"
MGMT, REMOTE, EU = (
    "mgmt-cluster (us-east-1/us-east-1a)",
    "remote-cluster (us-east-2/us-east-2b)",
    "cluster-3 (eu-west-1/eu-west-1a)",
)


def virtual_destination(
    *,
    name: str = "bookinfo-global",
    hostname: str = "reviews.global",
    to: str = "[{region: us-east-2}, {region: eu-west-1}]",
    clusters: str = "",
    outlier: str = "consecutiveErrors: 1\n      maxEjectionPercent: 100\n      interval: 5s\n      baseEjectionTime: 120s",
    protocol: str = "http",
) -> str:
    """The bundled example's VirtualDestination with a failover directive (and the knobs the
    scenarios turn)."""
    od = f"    outlierDetection:\n      {outlier}\n" if outlier else ""
    scope = f"\n          clusters: {clusters}" if clusters else ""
    return f"""\
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata:
  name: {name}
  namespace: gloo-mesh
spec:
  hostname: {hostname}
  port:
    number: 9080
    protocol: {protocol}
  localized:
    failoverDirectives:
      - from: {{region: us-east-1}}
        to: {to}
{od}    destinationSelectors:
      - kubeServiceMatcher:
          labels:
            app: reviews{scope}
  virtualMesh:
    name: virtual-mesh
    namespace: gloo-mesh
"""


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def policy_repo(tmp_path: Path, base_vd: str | None = None) -> Path:
    """The bundled example plus a failover directive, committed once on ``main``."""
    repo = tmp_path / "policy-repo"
    shutil.copytree(EXAMPLE, repo)
    (repo / "bookinfo-global.yaml").write_text(base_vd or virtual_destination())
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def commit(repo: Path, files: dict[str, str | None], message: str = "head") -> str:
    for rel, text in files.items():
        if text is None:
            (repo / rel).unlink()
        else:
            (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def impact_json(repo: Path, *extra: str, state: Path = STATE) -> tuple[int, dict[str, Any]]:
    code, out, err = cli(
        "impact", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--state", str(state), "-o", "json", *extra
    )
    assert code in (0, 1), err
    data = json.loads(out)
    jsonschema.validate(data, SCHEMA)
    return code, data


def routes(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r["hostname"], f"{r['client']['locality']} ({r['client']['cluster']})"): r for r in data["routes"]
    }


def labels(route: dict[str, Any] | None) -> list[list[str]]:
    """A route's priority levels as ``cluster (locality)`` names."""
    assert route is not None
    return [sorted(f"{e['cluster']} ({e['locality']})" for e in level) for level in route["priorities"]]


def placeholders(text: str, repo: Path, base: str = "HEAD~1") -> str:
    sha = git(repo, "rev-parse", base)
    return text.replace(str(STATE), "<state>").replace(str(repo), "<repo>").replace(sha[:12], "<base-sha>")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


# --------------------------------------------------------------------------------------------------
# the README example: reorder `to:` in the working tree


def test_reordered_to_list_changes_the_failover_order_text_and_markdown(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    (repo / "bookinfo-global.yaml").write_text(
        virtual_destination(to="[{region: eu-west-1}, {region: us-east-2}]")
    )

    code, out, err = cli("impact", str(repo), "--base", "HEAD", "--state", str(STATE))
    assert code == 1, err
    assert f"~ client {US_EAST_1}: failover order changed" in out
    assert f"before: {MGMT} → {REMOTE} → {EU}" in out
    assert f"after:  {MGMT} → {EU} → {REMOTE}" in out
    # clients of the other regions have no directive: their order is unchanged and said so
    assert f"= client {US_EAST_2}: unchanged: {REMOTE} → {EU} + {MGMT}" in out
    assert out.endswith("result: traffic changes\n")
    check_golden("reorder.txt", placeholders(out, repo, "HEAD"))

    code, md, _ = cli("impact", str(repo), "--base", "HEAD", "--state", str(STATE), "-o", "markdown")
    assert code == 1
    assert md.startswith("### mesh-reconciler impact: traffic changes\n")
    row = f"| `reviews.global` | {US_EAST_1} | {MGMT} → {REMOTE} → {EU} | **{MGMT} → {EU} → {REMOTE}** | failover order changed |"
    assert row in md
    assert "<details><summary>mgmt-cluster: ~ 1 changed</summary>" in md
    assert md.count("<details>") == md.count("</details>") == 1
    check_golden("reorder.md", placeholders(md, repo, "HEAD"))


def test_same_change_between_two_refs_and_between_two_directories(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    head_sha = commit(
        repo, {"bookinfo-global.yaml": virtual_destination(to="[{region: eu-west-1}, {region: us-east-2}]")}
    )
    code, by_refs = impact_json(repo)
    assert code == 1
    assert by_refs["head"] == {"ref": "HEAD", "commit": head_sha}

    base_dir, head_dir = tmp_path / "base", tmp_path / "head"
    shutil.copytree(repo, head_dir, ignore=shutil.ignore_patterns(".git"))
    shutil.copytree(head_dir, base_dir)
    (base_dir / "bookinfo-global.yaml").write_text(virtual_destination())
    code, out, _ = cli(
        "impact", "--base", str(base_dir), "--head", str(head_dir), "--state", str(STATE), "-o", "json"
    )
    assert code == 1
    by_dirs = json.loads(out)
    jsonschema.validate(by_dirs, SCHEMA)
    assert by_dirs["base"] == {"ref": str(base_dir), "commit": None}
    for key in ("routes", "risks", "policies", "objects", "summary"):
        assert by_dirs[key] == by_refs[key], key


# --------------------------------------------------------------------------------------------------
# the scenarios of the issue


def test_adding_a_region_adds_it_to_every_order_and_routes_its_clients(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path, virtual_destination(clusters="[mgmt-cluster, remote-cluster]"))
    commit(repo, {"bookinfo-global.yaml": virtual_destination()})  # every cluster: eu-west-1 joins
    code, data = impact_json(repo)
    assert code == 1
    rows = routes(data)
    eu = rows["reviews.global", EU_WEST_1]
    assert eu["changes"] == ["added"] and eu["before"] is None
    assert labels(eu["after"]) == [[EU], [MGMT, REMOTE]]
    us = rows["reviews.global", US_EAST_1]
    assert us["changes"] == ["order"]
    assert labels(us["before"]) == [[MGMT], [REMOTE]]
    assert labels(us["after"]) == [[MGMT], [REMOTE], [EU]]
    created = [(o["kind"], o["action"]) for o in data["objects"]["cluster-3"]]
    assert created == [("DestinationRule", "created"), ("ServiceEntry", "created")]
    assert [o["action"] for o in data["objects"]["mgmt-cluster"]] == ["changed"]
    assert data["risks"] == []


def test_removing_outlier_detection_falls_back_to_defaults_and_is_reported(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"bookinfo-global.yaml": virtual_destination(outlier="")})
    code, data = impact_json(repo)
    assert code == 1
    for row in data["routes"]:
        assert row["changes"] == ["outlierDetection"]  # the order is the same ...
        assert row["before"]["outlierDetection"]["consecutive5xxErrors"] == 1
        assert row["after"]["outlierDetection"]["consecutive5xxErrors"] == 5  # ... failover comes later
        assert row["after"]["failoverEnabled"] is True
    assert data["risks"] == []  # defaults keep failover on (maxEjectionPercent 100)
    code, out, _ = cli("impact", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--state", str(STATE))
    assert (
        "outlier detection baseEjectionTime 120s → 30s, consecutive5xxErrors 1 → 5, interval 5s → 10s" in out
    )


def test_a_low_max_ejection_percent_is_a_risk_failover_never_happens(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"bookinfo-global.yaml": virtual_destination(outlier="maxEjectionPercent: 10")})
    code, data = impact_json(repo)
    assert code == 1
    risks = {(r["kind"], r["client"]["cluster"]) for r in data["risks"]}
    assert risks == {("ejection-limit", c) for c in ("mgmt-cluster", "remote-cluster", "cluster-3")}
    message = next(r["message"] for r in data["risks"] if r["client"]["cluster"] == "mgmt-cluster")
    assert "maxEjectionPercent 10" in message and "33%" in message and "never fails over" in message
    assert all(r["new"] for r in data["risks"])
    code, md, _ = cli(
        "impact", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--state", str(STATE), "-o", "markdown"
    )
    assert "> [!CAUTION]\n> **ejection-limit**: maxEjectionPercent 10" in md


def test_serving_from_one_locality_is_a_risk_and_losing_the_hostname_too(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"bookinfo-global.yaml": virtual_destination(clusters="[mgmt-cluster]")})
    code, data = impact_json(repo)
    assert code == 1
    risks = {(r["kind"], f"{r['client']['locality']} ({r['client']['cluster']})") for r in data["risks"]}
    assert risks == {
        ("single-locality", US_EAST_1),
        ("single-locality", US_EAST_2),
        # cluster-3 is neither in the VirtualMesh nor backing it any more: nothing is rendered there
        ("no-destination", EU_WEST_1),
    }
    assert routes(data)["reviews.global", EU_WEST_1]["changes"] == ["removed"]
    assert [(o["kind"], o["action"]) for o in data["objects"]["cluster-3"]] == [
        ("DestinationRule", "pruned"),
        ("ServiceEntry", "pruned"),
    ]


def test_renaming_a_virtual_destination_keeps_traffic_and_renames_objects(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    tp = (repo / "reviews-shift-failover.yaml").read_text()
    commit(
        repo,
        {
            "bookinfo-global.yaml": virtual_destination(name="reviews-global"),
            "reviews-shift-failover.yaml": tp.replace("name: bookinfo-global", "name: reviews-global"),
        },
    )
    code, data = impact_json(repo)
    assert code == 0  # clients call the hostname: same hostname, same order, no traffic change
    assert not any(r["changed"] for r in data["routes"])
    assert {r["after"]["virtualDestination"] for r in data["routes"]} == {"gloo-mesh/reviews-global"}
    changes = {(p["kind"], p["name"]): (p["change"], p["before"], p["after"]) for p in data["policies"]}
    assert changes == {
        ("VirtualDestination", "bookinfo-global"): ("removed", "ACCEPTED", None),
        ("VirtualDestination", "reviews-global"): ("added", None, "ACCEPTED"),
        ("TrafficPolicy", "reviews-shift-failover"): ("changed", "ACCEPTED", "ACCEPTED"),
    }
    actions = sorted((o["name"], o["action"]) for o in data["objects"]["mgmt-cluster"])
    assert actions == [
        ("vd-bookinfo-global-gloo-mesh", "pruned"),
        ("vd-bookinfo-global-gloo-mesh", "pruned"),
        ("vd-reviews-global-gloo-mesh", "created"),
        ("vd-reviews-global-gloo-mesh", "created"),
    ]


def test_renaming_the_hostname_loses_the_old_one_and_reroutes_the_virtual_service(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"bookinfo-global.yaml": virtual_destination(hostname="reviews.mesh")})
    code, data = impact_json(repo)
    assert code == 1
    rows = routes(data)
    assert rows["reviews.global", US_EAST_1]["changes"] == ["removed"]
    assert rows["reviews.mesh", US_EAST_1]["changes"] == ["added"]
    assert {r["kind"] for r in data["risks"]} == {"no-destination"}
    vs = next(o for o in data["objects"]["mgmt-cluster"] if o["kind"] == "VirtualService")
    assert vs["action"] == "changed" and vs["routing"] is True
    assert "spec.http[0].route[0].destination.host" in vs["changedPaths"]


def test_a_broken_file_holds_everything_and_changes_no_traffic(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"bookinfo-global.yaml": virtual_destination() + "  oops: [unclosed\n"})
    code, data = impact_json(repo)
    assert code == 0  # nothing is pruned while the repository has errors: live objects stay
    assert not any(r["changed"] for r in data["routes"])
    assert all(r["after"]["held"].startswith("pruning suspended") for r in data["routes"])
    assert data["policies"] == [
        {  # its VirtualDestination is gone from what the plan can read
            "kind": "TrafficPolicy",
            "namespace": "bookinfo",
            "name": "reviews-shift-failover",
            "change": "state",
            "before": "ACCEPTED",
            "after": "INVALID",
            "errors": ["VirtualDestination gloo-mesh/bookinfo-global not found in the repository"],
        },
        {
            "kind": "VirtualDestination",
            "namespace": "gloo-mesh",
            "name": "bookinfo-global",
            "change": "state",
            "before": "ACCEPTED",
            "after": "UNREADABLE",
            "errors": ["bookinfo-global.yaml cannot be read"],
        },
    ]
    assert {o["action"] for objs in data["objects"].values() for o in objs} == {"held"}
    assert data["summary"]["newErrors"] == 2
    assert data["newFindings"][0].startswith("bookinfo-global.yaml:28:1: malformed YAML")
    assert "VirtualDestination gloo-mesh/bookinfo-global not found" in data["newFindings"][1]
    code, out, _ = cli("impact", str(repo), "--base", "HEAD~1", "--head", "HEAD", "--state", str(STATE))
    assert "new errors in head\n  bookinfo-global.yaml:" in out
    assert "! VirtualDestination gloo-mesh/bookinfo-global: state changed (ACCEPTED → UNREADABLE)" in out
    assert out.endswith("result: no traffic change\n")


def test_an_invalid_policy_goes_accepted_to_invalid_and_its_objects_are_held(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"bookinfo-global.yaml": virtual_destination(protocol="quic")})
    code, data = impact_json(repo)
    assert code == 0
    (vd,) = [p for p in data["policies"] if p["kind"] == "VirtualDestination"]
    assert (vd["change"], vd["before"], vd["after"]) == ("changed", "ACCEPTED", "INVALID")
    assert any("protocol must be one of" in e for e in vd["errors"])
    held = [o for objs in data["objects"].values() for o in objs]
    assert held and all(o["action"] == "held" for o in held)


def test_unchanged_repository_exits_0_with_an_empty_report(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    commit(repo, {"README.md": "# policies\n"})
    code, data = impact_json(repo)
    assert code == 0
    assert data["summary"]["trafficChanged"] is False
    assert data["policies"] == [] and data["objects"] == {} and data["risks"] == []
    assert len(data["routes"]) == 3  # every client locality, unchanged


def test_a_policy_directory_added_by_the_change_has_an_empty_base(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# a repository before its policies\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "empty")
    shutil.copytree(EXAMPLE, repo / "policies")
    commit(repo, {})
    code, out, err = cli(
        "impact", str(repo / "policies"), "--base", "HEAD~1", "--head", "HEAD", "--state", str(TWO_CLUSTERS)
    )
    assert code == 1, err
    assert f"~ client {US_EAST_1}: newly routed" in out
    assert "+ VirtualDestination gloo-mesh/bookinfo-global: added (ACCEPTED)" in out


# --------------------------------------------------------------------------------------------------
# errors: exit 2 with one line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "no-such-branch"], "revision 'no-such-branch' not found"),
        (["--base", "HEAD", "--head", "--upload-pack=x"], "invalid revision"),
        ([], "--base REF|DIR is required"),
    ],
)
def test_bad_revisions_are_fatal_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    repo = policy_repo(tmp_path)
    code, out, err = cli("impact", str(repo), *args, "--state", str(STATE))
    assert code == 2
    assert out == ""
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_missing_state_is_fatal(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path)
    code, _, err = cli("impact", str(repo), "--base", "HEAD", "--state", str(tmp_path / "nope"))
    assert code == 2
    assert "snapshot directory not found" in err


def test_a_path_outside_any_git_repository_needs_directories(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(EXAMPLE, plain)
    code, _, err = cli("impact", str(plain), "--base", "main", "--state", str(STATE))
    assert code == 2
    assert "is not inside a git repository" in err


# --------------------------------------------------------------------------------------------------
# the pure parts


def _plan(root: Path, state: Path = STATE) -> Any:
    return build_plan(root, ClusterSource(state=state))


def test_a_destination_rule_without_outlier_detection_is_flagged_failover_disabled(tmp_path: Path) -> None:
    # Translation always writes outlier detection; this guards the rule itself, on a rendered plan
    # whose DestinationRule lost it (what e.g. a future TrafficPolicy override could do).
    repo = policy_repo(tmp_path)
    with _plan(repo) as base, _plan(repo) as head:
        for obj in head.translation.all_objects():
            if obj.kind == "DestinationRule":
                obj.body["spec"]["trafficPolicy"].pop("outlierDetection")
        report = compare(base, head, RevisionInfo("base"), RevisionInfo("head"), "snapshot")
    assert {r.kind for r in report.risks} == {RiskKind.FAILOVER_DISABLED}
    assert len(report.new_risks) == 3
    row = next(r for r in report.routes if str(r.client) == US_EAST_1)
    # without outlier detection istiod assigns no priorities: one level, all regions at once
    assert row.changes == [RouteChangeKind.ORDER, RouteChangeKind.OUTLIER_DETECTION]
    assert row.after is not None and len(row.after.priorities) == 1
    assert (
        "failover is disabled for reviews.global (the DestinationRule has no outlier detection)"
        in render_text(report)
    )


def _route(*levels: list[str], od: dict[str, Any] | None = None) -> Route:
    from reconciler.findings import ObjectKey

    return Route(
        ObjectKey("VirtualDestination", "ns", "vd"),
        tuple(
            tuple(
                RouteEndpoint(c, loc, f"10.0.0.{i}", 80)
                for i, (c, loc) in enumerate(x.split("@") for x in lvl)
            )
            for lvl in levels
        ),
        od if od is not None else {"maxEjectionPercent": 100},
        True,
        "locality",
    )


def test_risks_are_new_only_when_the_base_did_not_have_them() -> None:
    client = Client("a", Locality("r1", "z1"))
    single = _route(["a@r1/z1"])
    two = _route(["a@r1/z1"], ["b@r2/z1"])
    assert [r.kind for r in route_risks("h", client, two, single)] == [RiskKind.SINGLE_LOCALITY]
    assert route_risks("h", client, two, single)[0].new is True
    assert route_risks("h", client, single, single)[0].new is False
    assert route_risks("h", client, two, two) == []
    assert [r.kind for r in route_risks("h", client, two, None)] == [RiskKind.NO_DESTINATION]
    assert route_risks("h", client, None, None) == []
    # 2 of 3 endpoints in priority 0 need 67%; 50 is too low, 70 is enough
    three = _route(["a@r1/z1", "a@r1/z1"], ["b@r2/z1"], od={"maxEjectionPercent": 50})
    assert [r.kind for r in route_risks("h", client, None, three)] == [RiskKind.EJECTION_LIMIT]
    enough = _route(["a@r1/z1", "a@r1/z1"], ["b@r2/z1"], od={"maxEjectionPercent": 70})
    assert route_risks("h", client, None, enough) == []


def test_markdown_is_capped_and_stays_valid(tmp_path: Path) -> None:
    repo = policy_repo(tmp_path, virtual_destination(clusters="[mgmt-cluster, remote-cluster]"))
    with _plan(repo) as base:
        (repo / "bookinfo-global.yaml").write_text(
            virtual_destination(to="[{region: eu-west-1}, {region: us-east-2}]")
        )
        with _plan(repo) as head:
            report: ImpactReport = compare(base, head, RevisionInfo("a"), RevisionInfo("b"), "snapshot")
    full = render_markdown(report)
    assert "Truncated" not in full
    for limit in (600, 1200, 2500, len(full) - 1):
        md = render_markdown(report, limit)
        assert len(md) <= limit, limit
        assert "> **Truncated**:" in md and "reconciler impact -o json" in md
        assert md.count("<details") == md.count("</details>")
        assert md.count("```") % 2 == 0
        assert md.startswith("### mesh-reconciler impact: traffic changes")


def test_clients_are_the_node_localities_of_the_fleet() -> None:
    inventory = read_snapshot(STATE)
    assert sorted((c, str(loc)) for c, st in inventory.clusters.items() for loc in st.localities()) == [
        ("cluster-3", "eu-west-1/eu-west-1a"),
        ("mgmt-cluster", "us-east-1/us-east-1a"),
        ("remote-cluster", "us-east-2/us-east-2b"),
    ]
