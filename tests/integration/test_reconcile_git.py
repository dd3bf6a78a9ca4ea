"""`reconciler reconcile --repo`: git in, clusters reconciled, status committed back (all real)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeharness import Clusters
from typer.testing import CliRunner, Result

from reconciler.commands.app import app
from tests.integration.conftest import EXAMPLE, git

pytestmark = pytest.mark.integration


def invoke(bare: Path, kubeconfig: Path, cache: Path, *extra: str) -> Result:
    return CliRunner().invoke(
        app,
        [
            "reconcile",
            "--repo",
            f"file://{bare}",
            "--cache-dir",
            str(cache),
            "--kubeconfig",
            str(kubeconfig),
            "--lease-cluster",
            "mgmt-cluster",
            "--log-format",
            "json",
            "-o",
            "json",
            *extra,
        ],
        env={"COLUMNS": "200"},
    )


def run(bare: Path, kubeconfig: Path, cache: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = invoke(bare, kubeconfig, cache, *extra)
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, payload


def status_doc(work: Path, kind: str, namespace: str, name: str) -> dict[str, Any]:
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    doc: dict[str, Any] = yaml.safe_load((work / "status" / kind / namespace / f"{name}.yaml").read_text())
    return doc


def test_reconcile_from_git_commits_status(
    fresh: Clusters, kubeconfig: Path, remote: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, work = remote
    cache = tmp_path / "cache"
    code, payload = run(bare, kubeconfig, cache)
    assert code == 0, payload
    assert payload["summary"] == {"created": 5}
    assert payload["statusCommit"]
    policy_commit = payload["policyCommit"]
    for kind, ns, name in (
        ("VirtualDestination", "gloo-mesh", "bookinfo-global"),
        ("TrafficPolicy", "bookinfo", "reviews-shift-failover"),
        ("VirtualMesh", "gloo-mesh", "virtual-mesh"),
    ):
        doc = status_doc(work, kind, ns, name)
        assert doc["status"]["state"] == "ACCEPTED", doc
        assert doc["status"]["observedGeneration"] == 1
        assert doc["status"]["observedCommit"] == policy_commit
    vd = status_doc(work, "VirtualDestination", "gloo-mesh", "bookinfo-global")["status"]
    assert {d["kubeService"]["clusterName"] for d in vd["selectedDestinations"]} == {
        "mgmt-cluster",
        "remote-cluster",
    }
    assert (
        "| VirtualDestination |" in (work / "status" / "README.md").read_text()
        or "bookinfo-global" in (work / "status" / "README.md").read_text()
    )
    log = git(work, "log", "--format=%an %s")
    assert log.splitlines()[0].startswith("mesh-reconciler status: reconcile ")

    # Nothing new: no second status commit.
    before = git(work, "rev-list", "--count", "HEAD")
    code, payload = run(bare, kubeconfig, cache)
    assert code == 0 and payload["statusCommit"] is None
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    assert git(work, "rev-list", "--count", "HEAD") == before

    # A reformatting-only change (comments, key order) is a new commit but not a new generation.
    path = work / "bookinfo-global.yaml"
    data = yaml.safe_load(path.read_text())
    path.write_text("# reformatted\n" + yaml.safe_dump(data, sort_keys=True))
    git(work, "commit", "-qam", "reformat")
    git(work, "push", "-q", "origin", "HEAD:main")
    code, payload = run(bare, kubeconfig, cache)
    assert code == 0
    assert (
        status_doc(work, "VirtualDestination", "gloo-mesh", "bookinfo-global")["status"]["observedGeneration"]
        == 1
    )

    # A spec change bumps the generation and is applied.
    path.write_text(path.read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 60s"))
    git(work, "commit", "-qam", "shorter ejection")
    git(work, "push", "-q", "origin", "HEAD:main")
    code, payload = run(bare, kubeconfig, cache)
    assert code == 0
    assert payload["summary"] == {"configured": 2, "unchanged": 3}
    status = status_doc(work, "VirtualDestination", "gloo-mesh", "bookinfo-global")["status"]
    assert status["observedGeneration"] == 2
    assert status["observedCommit"] == payload["policyCommit"] != policy_commit


def test_the_build_is_reused_only_while_nothing_it_read_changed(
    fresh: Clusters, kubeconfig: Path, remote: tuple[Path, Path], tmp_path: Path
) -> None:
    """The build cache against real clusters: an unchanged pass reuses the last build; a cluster
    going away (and coming back) is a change of what translation reads, so the build runs again and
    the objects depending on that cluster are held, never reconciled from the stale build."""
    bare, _ = remote
    cache = tmp_path / "cache"

    def reconcile() -> tuple[dict[str, Any], bool]:
        result = invoke(bare, kubeconfig, cache)
        assert result.exit_code in (0, 1), result.output
        return json.loads(result.stdout), "build reused" in result.stderr

    payload, reused = reconcile()
    assert payload["summary"] == {"created": 5} and not reused
    payload, reused = reconcile()
    assert payload["summary"] == {"unchanged": 5} and reused
    fresh["remote-cluster"].stop_apiserver()
    try:
        payload, reused = reconcile()
    finally:
        fresh["remote-cluster"].start_apiserver()
    assert not reused
    assert payload["summary"].get("held", 0) >= 2, payload["summary"]
    payload, reused = reconcile()
    assert payload["summary"] == {"unchanged": 5} and not reused  # rebuilt: the cluster is back
    payload, reused = reconcile()
    assert payload["summary"] == {"unchanged": 5} and reused


def test_a_status_report_edited_in_git_is_restored_by_the_next_pass(
    fresh: Clusters, kubeconfig: Path, remote: tuple[Path, Path], tmp_path: Path
) -> None:
    """Unchanged policies and clusters, but someone edited a report by hand: the pass must not take
    the reports from its memo (they are not as it left them); it rewrites and commits the report."""
    bare, work = remote
    cache = tmp_path / "cache"
    assert run(bare, kubeconfig, cache)[0] == 0
    assert run(bare, kubeconfig, cache)[1]["statusCommit"] is None  # the memo's no-op
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    report = work / "status" / "VirtualDestination" / "gloo-mesh" / "bookinfo-global.yaml"
    original = report.read_text()
    report.write_text(original.replace("state: ACCEPTED", "state: FAILED", 1))
    git(work, "commit", "-qam", "hand edit of a status report")
    git(work, "push", "-q", "origin", "HEAD:main")
    code, payload = run(bare, kubeconfig, cache)
    assert code == 0 and payload["statusCommit"], payload
    git(work, "pull", "-q", "--ff-only", "origin", "main")
    assert report.read_text() == original


def test_invalid_policy_reported_in_git_and_exit_1(
    fresh: Clusters, kubeconfig: Path, remote: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, work = remote
    path = work / "reviews-shift-failover.yaml"
    path.write_text(path.read_text().replace("trafficShift:", "trafficShfit:"))
    git(work, "commit", "-qam", "typo")
    git(work, "push", "-q", "origin", "HEAD:main")
    code, _ = run(bare, kubeconfig, tmp_path / "cache")
    assert code == 1
    doc = status_doc(work, "TrafficPolicy", "bookinfo", "reviews-shift-failover")["status"]
    assert doc["state"] == "INVALID"
    assert any("trafficShfit" in e and "reviews-shift-failover.yaml:" in e for e in doc["errors"])
    assert (
        status_doc(work, "VirtualDestination", "gloo-mesh", "bookinfo-global")["status"]["state"]
        == "ACCEPTED"
    )


def test_fetch_failure_is_fatal_and_applies_nothing(
    fresh: Clusters, kubeconfig: Path, tmp_path: Path
) -> None:
    result = invoke(tmp_path / "does-not-exist.git", kubeconfig, tmp_path / "cache")
    assert result.exit_code == 2
    assert result.stdout == ""  # no change set: nothing was applied
    # Exit 2 is also click's for any usage error: the message proves the fetch is the reason.
    assert "error: git: " in result.stderr, result.stderr


def test_dry_run_makes_no_commit(
    fresh: Clusters, kubeconfig: Path, remote: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, work = remote
    code, payload = run(bare, kubeconfig, tmp_path / "cache", "--dry-run")
    assert code == 0 and payload["dryRun"] is True and payload["statusCommit"] is None
    assert git(work, "ls-remote", str(bare), "main").split()[0] == git(work, "rev-parse", "HEAD")


def test_token_never_appears_in_any_output(fresh: Clusters, kubeconfig: Path, tmp_path: Path) -> None:
    """A succeeding and a failing run over HTTPS-style token auth (real git http-backend): the token
    is in no output, log line, status file or cache file."""
    from tests.gitserver import TOKEN, GitHttpServer

    files = {p.name: p.read_text() for p in sorted(EXAMPLE.iterdir())}
    with GitHttpServer(tmp_path / "git-server") as server:
        server.create_repo("mesh-policy", files)
        outputs: list[str] = []
        for token, expected in ((TOKEN, 0), ("wrong-" + TOKEN[::-1], 2)):
            result = CliRunner().invoke(
                app,
                [
                    "reconcile",
                    "--repo",
                    server.url("mesh-policy"),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--kubeconfig",
                    str(kubeconfig),
                    "--lease-cluster",
                    "mgmt-cluster",
                    "--log-format",
                    "json",
                ],
                env={"RECONCILER_GIT_TOKEN": token, "COLUMNS": "200"},
            )
            assert result.exit_code == expected, result.output
            outputs += [result.stdout, result.stderr or "", repr(result.exception)]
        assert "authentication" in outputs[-2].lower() or "auth" in outputs[-2].lower()
        for text in outputs:
            assert TOKEN not in text and TOKEN[::-1] not in text
        for path in list((tmp_path / "cache").rglob("*")) + list(server.repo_path("mesh-policy").rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                assert TOKEN.encode() not in data, f"token in {path}"
        status = [p for p in (tmp_path / "cache").rglob("status/**/*.yaml")]
        assert status  # the succeeding run wrote (and pushed) status
