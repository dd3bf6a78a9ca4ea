"""`reconciler serve`: a real worker process on a short interval, its metrics, and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, labels: str = "") -> float:
    """Sum of the samples of ``name`` whose labels contain ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series = line.split(" ")[0]
        if series.split("{")[0] == name and labels in series:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_serve_runs_passes_exposes_metrics_and_stops_on_sigterm(
    fresh: Clusters,
    kubeconfig: Path,
    remote: tuple[Path, Path],
    tmp_path: Path,
    api_clients: dict[str, ApiClient],
) -> None:
    bare, _ = remote
    port = free_port()
    log = tmp_path / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "reconciler",
        "serve",
        "--repo",
        f"file://{bare}",
        "--cache-dir",
        str(tmp_path / "c"),
        "--kubeconfig",
        str(kubeconfig),
        "--lease-cluster",
        "mgmt-cluster",
        "--interval",
        "2s",
        "--port",
        str(port),
        "--log-format",
        "json",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            code, text = get(base + "/metrics")
            if code == 200 and metric(text, "mesh_reconciler_runs_total") >= 3:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"fewer than 3 passes in 90s; log:\n{log.read_text()[-3000:]}")
        assert get(base + "/healthz") == (200, "ok\n")
        assert get(base + "/readyz")[0] == 200
        assert metric(text, "mesh_reconciler_runs_total", 'result="converged"') >= 3
        assert metric(text, "mesh_reconciler_objects_total", 'action="created"') == 5  # first pass only
        assert metric(text, "mesh_reconciler_objects_total", 'action="unchanged"') >= 10
        assert metric(text, "mesh_reconciler_max_concurrent_runs") == 1  # never two passes at once
        assert metric(text, "mesh_reconciler_last_success_timestamp_seconds") > time.time() - 60
        assert metric(text, "mesh_reconciler_policies", 'state="ACCEPTED"') == 3

        stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert time.monotonic() - stop < 60
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    lease = kube.get(
        api_clients["mgmt-cluster"],
        "coordination.k8s.io/v1",
        "Lease",
        "mesh-reconciler",
        namespace="mesh-reconciler",
    )
    assert not lease["spec"].get("holderIdentity")  # released
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is a JSON object
    assert any(
        r["msg"].startswith("cluster mgmt-cluster:") and r.get("cluster") == "mgmt-cluster" for r in records
    )
    assert any(r.get("action") == "created" and r.get("kind") == "ServiceEntry" for r in records)
    assert records[-1]["msg"].startswith("stopped after ")


def test_serve_rejects_bad_schedule(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "serve", "--repo", "x", "--cron", "not a cron"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid --cron" in result.stderr
