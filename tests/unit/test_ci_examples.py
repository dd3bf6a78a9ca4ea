"""The review conventions, run for real: the pre-commit hook's entry, and the commands of the example
GitHub Actions and GitLab CI definitions in repo-layout/ (not the CI services: the same shell steps,
with the variables those services set, in a real repository with a pull-request branch)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "policies"
STATE = REPO / "tests" / "golden" / "state" / "three-regions"
BROKEN = REPO / "tests" / "golden" / "validate" / "broken-repo"
BIN = Path(sys.executable).parent
DIRECTIVE = "    failoverDirectives:\n      - from: {region: us-east-1}\n        to: [{region: us-east-2}, {region: eu-west-1}]\n"
REORDERED = "[{region: eu-west-1}, {region: us-east-2}]"
# what the comment must show for the reordered fallbacks (client in us-east-1a)
ROW = (
    "| `reviews.global` | us-east-1/us-east-1a (mgmt-cluster) "
    "| mgmt-cluster (us-east-1/us-east-1a) → remote-cluster (us-east-2/us-east-2b) → cluster-3 (eu-west-1/eu-west-1a) "
    "| **mgmt-cluster (us-east-1/us-east-1a) → cluster-3 (eu-west-1/eu-west-1a) → remote-cluster (us-east-2/us-east-2b)** "
    "| failover order changed |"
)


def env(**extra: str) -> dict[str, str]:
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "COLUMNS": "200",
        **extra,
    }


def sh(cwd: Path, script: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env(), check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A clone of a policy repository whose ``main`` holds the example, a failover directive and the
    CronJob's exported snapshot; checked out on a branch that reorders the fallbacks."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "clone", "-q", str(bare), str(work))
    shutil.copytree(EXAMPLE, work, dirs_exist_ok=True)
    vd = work / "bookinfo-global.yaml"
    vd.write_text(vd.read_text().replace("  localized:\n", "  localized:\n" + DIRECTIVE, 1))
    shutil.copytree(STATE, work / "status" / "snapshot")  # what `status: {snapshot: true}` commits
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "policies and the status snapshot")
    git(work, "push", "-q", "origin", "HEAD:main")
    git(work, "checkout", "-q", "-b", "reorder")
    vd.write_text(vd.read_text().replace("[{region: us-east-2}, {region: eu-west-1}]", REORDERED))
    git(work, "commit", "-q", "-am", "eu-west-1 before us-east-2")
    return work


# --------------------------------------------------------------------------------------------------
# pre-commit


def test_pre_commit_hook_runs_validate_on_the_repository(tmp_path: Path) -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "reconciler-validate"
    assert hook["language"] == "python"  # pre-commit installs this project (pyproject.toml) for it
    assert hook["pass_filenames"] is False
    # the three lines a policy repository adds, as documented in the file's header
    header = [ln.removeprefix("#   ") for ln in (REPO / ".pre-commit-hooks.yaml").read_text().splitlines()]
    start = header.index("- repo: https://git.example.com/platform/mesh-reconciler")
    snippet = yaml.safe_load("\n".join(header[start : start + 3]))
    assert snippet[0]["hooks"] == [{"id": "reconciler-validate"}]

    # pre-commit runs the entry at the repository root, without file names
    good = tmp_path / "good"
    shutil.copytree(EXAMPLE, good)
    done = sh(good, hook["entry"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("valid: 1 TrafficPolicy, 1 VirtualDestination, 1 VirtualMesh valid")

    bad = tmp_path / "bad"
    shutil.copytree(BROKEN, bad)
    done = sh(bad, hook["entry"])
    assert done.returncode == 1
    assert "INVALID: " in done.stdout and "protocol must be one of" in done.stdout

    with_args = sh(tmp_path, shlex.join([*shlex.split(hook["entry"]), "good/"]))
    assert with_args.returncode == 0, with_args.stderr


# --------------------------------------------------------------------------------------------------
# GitHub Actions


def test_github_actions_example_validates_and_posts_the_failover_change(
    pull_request: Path, tmp_path: Path
) -> None:
    workflow = yaml.safe_load(
        (REPO / "repo-layout" / ".github" / "workflows" / "mesh-policy.yaml").read_text()
    )
    job: dict[str, Any] = workflow["jobs"]["review"]
    steps = {s.get("id", s.get("uses")): s for s in job["steps"]}
    # what this test does not run: actions, the installation, and posting (needs GitHub)
    assert sorted(k for k in steps if k not in ("snapshot", "validate", "impact")) == [
        "actions/checkout@v4",
        "actions/setup-python@v5",
        "comment",
        "install",
    ]
    assert steps["actions/checkout@v4"]["with"]["fetch-depth"] == 0
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    summary = tmp_path / "step-summary.md"
    variables = {
        **{k: str(v) for k, v in job["env"].items()},
        "GITHUB_BASE_REF": "main",
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    for step in ("snapshot", "validate", "impact"):
        done = sh(pull_request, steps[step]["run"], **variables)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    comment = (pull_request / "impact.md").read_text()
    assert comment.startswith("### mesh-reconciler impact: traffic changes")
    assert ROW in comment
    assert summary.read_text() == comment
    assert '--base "origin/$GITHUB_BASE_REF"' in steps["impact"]["run"]


def test_github_actions_example_fails_on_an_invalid_policy(pull_request: Path, tmp_path: Path) -> None:
    workflow = yaml.safe_load(
        (REPO / "repo-layout" / ".github" / "workflows" / "mesh-policy.yaml").read_text()
    )
    validate = next(s for s in workflow["jobs"]["review"]["steps"] if s.get("id") == "validate")
    vd = pull_request / "bookinfo-global.yaml"
    vd.write_text(vd.read_text().replace("protocol: http", "protocol: quic"))
    done = sh(pull_request, validate["run"])
    assert done.returncode == 1 and "protocol must be one of" in done.stdout


# --------------------------------------------------------------------------------------------------
# GitLab CI


def test_gitlab_ci_example_validates_and_writes_the_note(pull_request: Path) -> None:
    pipeline = yaml.safe_load((REPO / "repo-layout" / ".gitlab-ci.yml").read_text())
    job = pipeline["mesh-policy-review"]
    assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert job["variables"]["GIT_DEPTH"] == "0"
    lines = [ln for ln in job["script"] if not ln.startswith("curl ")]
    assert len(lines) == len(job["script"]) - 1  # only posting the note needs GitLab
    variables = {**job["variables"], "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"}
    done = sh(pull_request, "\n".join(lines), **variables)
    assert done.returncode == 0, (done.stdout, done.stderr)
    note = (pull_request / "impact.md").read_text()
    assert ROW in note
    assert job["artifacts"]["paths"] == ["impact.md"]


def test_gitlab_ci_example_passes_when_nothing_changes_traffic(pull_request: Path) -> None:
    pipeline = yaml.safe_load((REPO / "repo-layout" / ".gitlab-ci.yml").read_text())
    job = pipeline["mesh-policy-review"]
    git(pull_request, "revert", "--no-edit", "HEAD")
    lines = [ln for ln in job["script"] if not ln.startswith("curl ")]
    done = sh(pull_request, "\n".join(lines), **job["variables"], CI_MERGE_REQUEST_TARGET_BRANCH_NAME="main")
    assert done.returncode == 0, done.stderr
    assert (
        (pull_request / "impact.md").read_text().startswith("### mesh-reconciler impact: no traffic change")
    )


# --------------------------------------------------------------------------------------------------
# the README's example, pasted as printed


def test_readme_impact_example_shows_the_reordered_failover(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### `impact`: what a pull request does to traffic") :]
    script = section[section.index("```bash\n") + len("```bash\n") :]
    script = script[: script.index("\n```\n")]
    console = section[section.index("```console\n") + len("```console\n") :]
    console = console[: console.index("\n```\n")]
    copy = tmp_path / "mesh-policy"
    script = script.replace("/tmp/mesh-policy", str(copy)).replace(
        ".venv/bin/reconciler", str(BIN / "reconciler")
    )
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", script], cwd=REPO, env=env(), capture_output=True, text=True
    )
    assert done.returncode == 1, done.stderr  # the last command's: traffic changes
    out = done.stdout.replace(str(copy), "/tmp/mesh-policy")
    assert "exit 1\n### mesh-reconciler impact: traffic changes\n" in out
    assert ROW in out
    # every line the README shows is what the commands print (the sha and elided parts aside)
    for line in console.splitlines():
        if line.startswith("impact: base HEAD (") or "…" in line:
            continue
        assert line in out.splitlines(), line
