"""Retries with backoff on 429/5xx, honouring Retry-After — against a real HTTP server on loopback.

A real API server does not throttle or fail on demand, so the fault comes from
``FaultInjectingServer``: a small HTTP server that answers like the API server would under load
(429 with ``Retry-After``, 503) before answering normally. Everything else is the real client stack.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from kubernetes import client

import reconciler.clusters.kube as kube_module
from reconciler.clusters.inventory import READ_SHAPES
from reconciler.clusters.kube import NODES, SERVICE_ENTRIES, KubeClient, KubeError, PageFeeder
from tests.unit.helpers import LoopbackHTTPServer


class FaultInjectingServer(LoopbackHTTPServer):
    """Serves a scripted sequence of (status, headers, body) answers, then 200 with an empty list."""

    def __init__(self, script: list[tuple[int, dict[str, str], dict[str, Any]]]) -> None:
        self.script = list(script)
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = outer.script.pop(0) if outer.script else (200, {}, {"items": []})
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        super().__init__(Handler)

    def client(self, sleeps: list[float]) -> KubeClient:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        configuration.retries = False  # as ClusterTarget.api_client() sets it: our retries only
        return KubeClient(client.ApiClient(configuration), "test", timeout=5, sleep=sleeps.append)


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
        "details": details,
    }


@pytest.fixture
def sleeps() -> Iterator[list[float]]:
    yield []


def test_429_with_retry_after_is_retried_after_that_long(sleeps: list[float]) -> None:
    script = [
        (429, {"Retry-After": "3"}, status(429, "TooManyRequests", "slow down", retryAfterSeconds=3)),
        (503, {}, status(503, "ServiceUnavailable", "etcd leader changed")),
    ]
    with FaultInjectingServer(script) as server:
        kube = server.client(sleeps)
        assert kube.list(NODES) == []
    assert len(server.requests) == 3
    assert sleeps[0] == 3.0  # Retry-After honoured
    assert sleeps[1] == 0.5  # then exponential backoff
    assert kube.requests[("get", "nodes")] == 3


def test_retries_are_bounded(sleeps: list[float]) -> None:
    script = [(503, {}, status(503, "ServiceUnavailable", "down"))] * 10
    with FaultInjectingServer(script) as server:
        kube = server.client(sleeps)
        with pytest.raises(KubeError) as err:
            kube.list(NODES)
    assert err.value.status == 503
    assert len(server.requests) == kube.attempts == 4


def test_client_errors_and_schema_500s_are_not_retried(sleeps: list[float]) -> None:
    body = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "x", "namespace": "y"},
    }
    script = [
        (
            500,
            {},
            status(500, "InternalError", "failed to create typed patch object: .spec.hosts: expected list"),
        )
    ]
    with FaultInjectingServer(script) as server:
        kube = server.client(sleeps)
        with pytest.raises(KubeError, match="typed patch"):
            kube.apply(SERVICE_ENTRIES, body, force=True, dry_run=False)
    assert len(server.requests) == 1 and sleeps == []
    with FaultInjectingServer([(422, {}, status(422, "Invalid", "spec.hosts: Required value"))]) as server:
        kube = server.client(sleeps)
        with pytest.raises(KubeError) as err:
            kube.apply(SERVICE_ENTRIES, body, force=True, dry_run=False)
    assert err.value.status == 422 and len(server.requests) == 1
    assert (
        "fieldManager=mesh-reconciler" in server.requests[0]
        and "fieldValidation=Strict" in server.requests[0]
    )


def test_unreachable_server_is_a_clear_error(sleeps: list[float]) -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = False
    kube = KubeClient(client.ApiClient(configuration), "gone", timeout=1, sleep=sleeps.append)
    with pytest.raises(KubeError, match="cannot reach the API server of gone"):
        kube.list(NODES)
    assert len(sleeps) == kube.attempts - 1


def test_an_answer_not_of_the_shape_asked_for_is_a_clear_error_and_not_retried(sleeps: list[float]) -> None:
    """A LIST decoded as a shape (discovery's ``READ_SHAPES``) whose answer does not fit it fails
    with the place that does not fit; the same answer would fail again, so it is not asked again."""
    with FaultInjectingServer([(200, {}, {"kind": "NodeList", "items": "not a list"})]) as server:
        kube = server.client(sleeps)
        with pytest.raises(KubeError) as err:
            kube.list(NODES, decoder=PageFeeder(READ_SHAPES["Node"], print))
    assert err.value.reason == "BadResponse"
    assert "unreadable answer from the API server of test" in str(err.value) and "$.items" in str(err.value)
    assert len(server.requests) == 1 and sleeps == []


def test_a_list_item_that_is_not_an_object_is_a_clear_error(sleeps: list[float]) -> None:
    """Whatever the answer holds, a LIST fails with a message naming the cluster, never a crash."""
    with FaultInjectingServer([(200, {}, {"kind": "NodeList", "items": [None]})]) as server:
        kube = server.client(sleeps)
        with pytest.raises(KubeError) as err:
            kube.list(NODES)
    assert err.value.reason == "BadResponse" and "an item of the nodes listed is not an object" in str(
        err.value
    )
    assert len(server.requests) == 1


def test_an_answer_is_read_even_when_another_cluster_holds_the_exclusive_lock_too_long(
    sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder's ``exclusive`` lock (answers of our kinds read one at a time across clusters)
    only saves memory: a request waits for it EXCLUSIVE_WAIT at most, then reads its answer."""
    monkeypatch.setattr(kube_module, "EXCLUSIVE_WAIT", 0.01)
    held = threading.Lock()
    decoded: list[Any] = []

    class Exclusive:
        exclusive = held

        def decode(self, data: bytes | bytearray, /) -> Any:
            decoded.append(held.locked())
            return {"items": [{"metadata": {"name": "a"}}]}

    with FaultInjectingServer([(200, {}, {"kind": "NodeList", "items": []})]) as server:
        kube = server.client(sleeps)
        assert held.acquire()  # another cluster's slow answer
        try:
            [item] = kube.list(NODES, decoder=Exclusive())
        finally:
            assert held.locked()  # still that cluster's: never released by someone else
            held.release()
    assert item["metadata"]["name"] == "a" and len(decoded) == 1
    # and when the lock is free, it is taken for the read and given back
    with FaultInjectingServer([(200, {}, {"kind": "NodeList", "items": []})]) as server:
        server.client(sleeps).list(NODES, decoder=Exclusive())
    assert decoded[-1] is True and not held.locked()
