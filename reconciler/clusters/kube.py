"""A thin JSON client for one cluster: the official ``kubernetes`` client's configuration (kubeconfig,
credentials, TLS) and our own lean HTTP transport (:mod:`reconciler.clusters.transport`: a request
per object is most of what a first sync does, and the client's urllib3 stack doubled its CPU).

We speak plain JSON dicts (what ``kubectl get -o json`` shows) instead of the generated models:
objects go straight into diffs, snapshots and server-side apply, and the requests made are exactly
the ones listed here (LIST, WATCH for ``serve``'s caches, server-side apply, DELETE, and GET/POST/PUT for
the run Lease) — which
the tests count against the API server's audit log. Transient failures (429, 5xx, timeouts) are
retried with bounded exponential backoff, honouring ``Retry-After``.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict
from urllib.parse import quote, urlencode

import msgspec

from reconciler.clusters.transport import Response, Transport

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

FIELD_MANAGER = "mesh-reconciler"
LIST_PAGE_SIZE = 5000
"""Objects per LIST page. Larger than kubectl's 500 on purpose: every continuation page is one more
request, and on kube-apiserver 1.37 more, smaller pages were slower in all (at 1,000 services, the
7 LISTs of a cluster took 0.86 s in 15 pages against 0.48 s in 7: a third of a no-op pass). We keep
every item of a collection in memory anyway, so smaller pages would only save the server work."""
EXCLUSIVE_WAIT = 1.0
"""Seconds a request waits for its decoder's ``exclusive`` lock before it reads its answer anyway.
The lock only saves memory (answers of several MB read one at a time across clusters; reading one
takes ~50 ms at 1,000 services on a local server): a cluster must never wait long on another's slow
answer, since its own deadline (``cluster_timeout``) counts that wait."""
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


@dataclass(frozen=True)
class Resource:
    group_version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return self.group_version

    def base(self) -> str:
        prefix = "/api" if "/" not in self.group_version else "/apis"
        return f"{prefix}/{self.group_version}"

    def collection(self, namespace: str | None = None) -> str:
        if self.namespaced and namespace:
            return f"{self.base()}/namespaces/{quote(namespace)}/{self.plural}"
        return f"{self.base()}/{self.plural}"

    def item(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection(namespace)}/{quote(name)}"


NODES = Resource("v1", "nodes", "Node", namespaced=False)
SERVICES = Resource("v1", "services", "Service")
ENDPOINT_SLICES = Resource("discovery.k8s.io/v1", "endpointslices", "EndpointSlice")
DEPLOYMENTS = Resource("apps/v1", "deployments", "Deployment")
SERVICE_ENTRIES = Resource("networking.istio.io/v1", "serviceentries", "ServiceEntry")
DESTINATION_RULES = Resource("networking.istio.io/v1", "destinationrules", "DestinationRule")
VIRTUAL_SERVICES = Resource("networking.istio.io/v1", "virtualservices", "VirtualService")
LEASES = Resource("coordination.k8s.io/v1", "leases", "Lease")

ISTIO_RESOURCES = {r.kind: r for r in (SERVICE_ENTRIES, DESTINATION_RULES, VIRTUAL_SERVICES)}


class KubeError(Exception):
    """An API request that failed for good; carries the server's status and message."""

    def __init__(
        self, status: int, message: str, reason: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}" if self.status else self.message


_PERMANENT_500 = ("failed to create typed patch object", "field not declared in schema")
"""Server-side apply reports schema violations as 500s; retrying those cannot help."""


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, KubeError):
        if exc.status == 500 and any(text in exc.message for text in _PERMANENT_500):
            return False
        return exc.status == 429 or exc.status >= 500 or exc.status == 0
    return False


class KubeClient:
    """JSON requests against one cluster, with retries and a per-request timeout."""

    def __init__(
        self,
        api: ApiClient,
        cluster: str,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        max_backoff: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        self.api = api
        self.transport = Transport(api.configuration)
        self.page_size = page_size
        self.cluster = cluster
        self.timeout = timeout
        self.attempts = attempts
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._counting = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        """(verb, resource) -> number of requests sent, retries included."""

    # -- low level ---------------------------------------------------------------------------------

    def _backoff(self, exc: KubeError, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: the server's Retry-After when it sent one (bounded),
        else exponential backoff from 0.25 s, capped at ``max_backoff``."""
        retry_after = exc.details.get("retryAfter", exc.details.get("retryAfterSeconds"))
        if isinstance(retry_after, (int, float)) and retry_after > 0:
            return float(min(float(retry_after), self.max_backoff * 4))
        return float(min(self.max_backoff, 0.25 * (2 ** (attempt - 1))))

    def request(
        self,
        verb: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        resource: str = "",
        accept: str = "application/json",
        decoder: Decoder | None = None,
    ) -> dict[str, Any]:
        """One request (retried while retryable); its JSON answer as plain data, or as ``decoder``
        decodes it (a LIST page, :meth:`list`)."""
        # A plain loop (it was tenacity's): a first sync makes one request per object, and the
        # library's per-call bookkeeping cost 0.06 ms of CPU each — a tenth of the request itself.
        attempts = max(1, self.attempts)
        for attempt in range(1, attempts + 1):
            try:
                return self._request_once(verb, path, query, body, content_type, resource, accept, decoder)
            except KubeError as exc:
                if attempt >= attempts or not _retryable(exc):
                    raise
                self._sleep(self._backoff(exc, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request_once(
        self,
        verb: str,
        path: str,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        resource: str,
        accept: str,
        decoder: Decoder | None,
    ) -> dict[str, Any]:
        with self._counting:  # requests of one cluster may be sent from several threads
            self.requests[(verb, resource or path)] += 1
        headers = {"Accept": accept}
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            if isinstance(body, str):
                data = body.encode()
            elif isinstance(body, bytes):
                data = body
            else:
                data = json.dumps(body, separators=(",", ":")).encode()
        # A decoder may ask for its answers to be read one at a time (``exclusive``: a lock it
        # shares with the decoders of other clusters): the answers of the others wait in their
        # sockets meanwhile, not in this process's memory. Never for long: see EXCLUSIVE_WAIT.
        exclusive = getattr(decoder, "exclusive", None)
        try:
            response = self.transport.request(
                verb.upper(), path + _query(query), headers=headers, body=data, timeout=self.timeout
            )
            held = exclusive is not None and exclusive.acquire(timeout=EXCLUSIVE_WAIT)
            try:
                return self._answer(response, decoder)
            finally:
                if held and exclusive is not None:
                    exclusive.release()
        except (http.client.HTTPException, OSError) as exc:
            raise KubeError(
                0, f"cannot reach the API server of {self.cluster}: {_short(exc)}", "Unreachable"
            ) from None

    def _answer(self, response: Response, decoder: Decoder | None) -> dict[str, Any]:
        """The body of an answer, decoded (or the error it is)."""
        data = response.read()
        status = response.status
        retry_after = response.header("Retry-After")
        if status >= 400:
            raise _to_kube_error(status, data, "", {"Retry-After": retry_after} if retry_after else None)
        if not data:
            return {}
        try:
            parsed: dict[str, Any] = decode_json(data) if decoder is None else decoder.decode(data)
        except msgspec.DecodeError as exc:  # not JSON, or not the shape asked for (page_decoder)
            # Not retried (the status is the answer's own, < 400): the same answer would fail again.
            raise KubeError(
                status, f"unreadable answer from the API server of {self.cluster}: {exc}", "BadResponse"
            ) from None
        return parsed

    # -- verbs -------------------------------------------------------------------------------------

    def list_versioned(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        namespace: str | None = None,
        metadata_only: bool = False,
        decoder: Decoder | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """:meth:`list`, plus the list's ``resourceVersion`` (where a WATCH of the same collection starts)."""
        items: list[dict[str, Any]] = []
        cont: str | None = None
        accept = METADATA_LIST if metadata_only else "application/json"
        while True:
            page = self.request(
                "get",
                resource.collection(namespace),
                query={"labelSelector": label_selector, "limit": self.page_size, "continue": cont},
                resource=resource.plural,
                accept=accept,
                decoder=decoder,
            )
            for item in page.get("items") or []:
                if not isinstance(item, dict):  # never from a real API server; never a crash either
                    raise KubeError(
                        200,
                        f"unreadable answer from the API server of {self.cluster}: "
                        f"an item of the {resource.plural} listed is not an object",
                        "BadResponse",
                    )
                if metadata_only:  # items are PartialObjectMetadata: name them as the real kind
                    item["apiVersion"], item["kind"] = resource.api_version, resource.kind
                item.setdefault("apiVersion", resource.api_version)
                item.setdefault("kind", resource.kind)
                items.append(item)
            cont = (page.get("metadata") or {}).get("continue") or None
            if not cont:
                return items, str((page.get("metadata") or {}).get("resourceVersion") or "")

    def list(
        self,
        resource: Resource,
        *,
        label_selector: str | None = None,
        namespace: str | None = None,
        metadata_only: bool = False,
        decoder: Decoder | None = None,
    ) -> list[dict[str, Any]]:
        """LIST a collection (paged by :attr:`page_size`), returning items with ``apiVersion``/``kind`` filled in.

        ``metadata_only``: ask for ``PartialObjectMetadataList`` — names, labels, managedFields, no
        spec — when only "which objects exist, and whose are they" matters.
        ``decoder``: decodes each page (default: plain JSON data); :func:`page_decoder` keeps only
        the fields of a shape, and discovery shares equal parts of our objects as each page is
        decoded (:mod:`reconciler.clusters.discover`). Either way the items are plain dicts.
        """
        return self.list_versioned(
            resource,
            label_selector=label_selector,
            namespace=namespace,
            metadata_only=metadata_only,
            decoder=decoder,
        )[0]

    def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
        on_open: Callable[[Any], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """WATCH a collection from ``resource_version``: yields the events (``{"type", "object"}``).

        One request, never retried here (the caller re-watches or re-lists). The server ends the
        stream after ``timeout_seconds``; the read timeout is a little longer, so a dead connection
        cannot block forever. ``on_open`` gets the streaming response (to shut it down from another
        thread). An ``ERROR`` event (e.g. 410 Gone: the version was compacted) raises KubeError.
        """
        self.requests[("watch", resource.plural)] += 1
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
            "labelSelector": label_selector or None,
        }
        unreachable = f"cannot reach the API server of {self.cluster}"
        try:
            response = self.transport.request(
                "GET",
                resource.collection() + _query(query),
                headers={"Accept": "application/json"},
                timeout=(self.timeout, timeout_seconds + 30),
            )
        except (http.client.HTTPException, OSError) as exc:
            raise KubeError(0, f"{unreachable}: {_short(exc)}", "Unreachable") from None
        try:
            if response.status >= 400:
                raise _to_kube_error(response.status, response.read(), "", None)
            if on_open is not None:
                on_open(response)
            buffer = b""
            for chunk in response.stream():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield _watch_event(decode_json(line))
            if buffer.strip():
                yield _watch_event(decode_json(buffer))
        except (http.client.HTTPException, OSError) as exc:
            raise KubeError(0, f"{unreachable}: watch interrupted: {_short(exc)}", "Unreachable") from None
        finally:
            response.close()  # a no-op after an answer read to its end (its connection is kept)

    def apply(self, resource: Resource, obj: dict[str, Any], *, force: bool, dry_run: bool) -> dict[str, Any]:
        """Server-side apply as ``mesh-reconciler``."""
        meta = obj["metadata"]
        return self.request(
            "patch",
            resource.item(meta["name"], meta.get("namespace")),
            query={
                "fieldManager": FIELD_MANAGER,
                "fieldValidation": "Strict",
                "force": "true" if force else None,
                "dryRun": "All" if dry_run else None,
            },
            # Serialised here, once, with the C encoder: JSON is YAML, and the client's own
            # recursive sanitising of a dict body costs more CPU than the request itself.
            body=json.dumps(obj, separators=(",", ":")),
            content_type="application/apply-patch+yaml",
            resource=resource.plural,
        )

    def delete(
        self, resource: Resource, name: str, namespace: str | None, *, uid: str | None, dry_run: bool
    ) -> None:
        """DELETE with a UID precondition, so an object recreated meanwhile is never removed."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        self.request(
            "delete",
            resource.item(name, namespace),
            query={"dryRun": "All" if dry_run else None},
            body=body,
            resource=resource.plural,
        )

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return self.request("get", resource.item(name, namespace), resource=resource.plural)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        return self.request(
            "post", resource.collection(obj["metadata"].get("namespace")), body=obj, resource=resource.plural
        )

    def replace(self, resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self.request(
            "put", resource.item(meta["name"], meta.get("namespace")), body=obj, resource=resource.plural
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort on shutdown
            self.transport.close()
            self.api.close()


def _watch_event(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("type") == "ERROR":
        status: dict[str, Any] = event.get("object") or {}
        raise KubeError(
            int(status.get("code") or 0),
            str(status.get("message") or "watch failed"),
            str(status.get("reason") or ""),
        )
    return event


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "..."


def _to_kube_error(status: int, body: Any, reason: str, headers: Any) -> KubeError:
    message, kind = reason or "request failed", reason
    details: dict[str, Any] = {}
    try:
        payload = json.loads(body) if body else {}
        message = payload.get("message") or message
        kind = payload.get("reason") or kind
        details = payload.get("details") or {}
    except (TypeError, ValueError):
        if body:
            message = (
                bytes(body).decode(errors="replace") if isinstance(body, bytes | bytearray) else str(body)
            )
    if headers:
        retry_after = headers.get("Retry-After") if hasattr(headers, "get") else None
        if retry_after:
            with contextlib.suppress(ValueError):
                details = {**details, "retryAfter": float(retry_after)}
    return KubeError(status, message, kind, details)


class Decoder(Protocol):
    """What decodes the body of an answer (``msgspec.json.Decoder`` is one)."""

    def decode(self, data: bytes | bytearray, /) -> Any: ...


class _RawPage(TypedDict, total=False):
    metadata: Any
    items: list[msgspec.Raw] | None


_RAW_PAGE = msgspec.json.Decoder(_RawPage)


def raw_page(data: bytes | bytearray) -> tuple[Any, list[msgspec.Raw]]:
    """A LIST page's ``metadata`` and its items left as JSON (``msgspec.Raw``: views into ``data``,
    not copies), to be decoded one at a time."""
    page = _RAW_PAGE.decode(data)
    return page.get("metadata"), page.get("items") or []


@functools.cache
def _item_decoder(shape: type) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(shape)


@dataclass
class PageFeeder:
    """Decodes a LIST page one item at a time into ``shape`` (a ``TypedDict``: the fields it does
    not name are skipped while parsing and cost no memory) and gives each item to ``feed`` as it
    is decoded. The page it returns has no items left: no item outlives its turn. An item that does
    not fit the shape (not an object, say) fails the page with a ``msgspec.DecodeError``."""

    shape: type
    feed: Callable[[Any], None]

    def decode(self, data: bytes | bytearray, /) -> Any:
        metadata, items = raw_page(data)
        decoder = _item_decoder(self.shape)
        for raw in items:
            self.feed(decoder.decode(raw))
        return {"metadata": metadata, "items": []}


def decode_json(data: bytes | bytearray) -> Any:
    """JSON from the API server as plain Python data, exactly what ``json.loads`` returns.

    msgspec's decoder, because decoding the LISTs is most of what a no-op pass does with them (it
    is ~2x faster than the standard library here); a malformed body raises a ValueError the same way.
    """
    return msgspec.json.decode(data)


def _query(params: dict[str, Any] | None) -> str:
    """``?k=v&...`` of the parameters that are set ("" when none is)."""
    kept = {k: v for k, v in (params or {}).items() if v is not None}
    return "?" + urlencode(kept) if kept else ""
