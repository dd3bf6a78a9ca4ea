"""Small, typed, generic helpers on top of the official client's :class:`ApiClient`.

The generated typed APIs of ``kubernetes`` 37 validate bodies strictly as pydantic models; for a
test harness plain dicts are more convenient, so these helpers send JSON through the
``ApiClient``'s own transport (same TLS/auth configuration as the kubeconfig context) and return
decoded JSON. Errors are raised as the client's usual ``ApiException`` subclasses
(``NotFoundException``, ``ForbiddenException``, ``UnprocessableEntityException``, ...).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

JSON = dict[str, Any]
T = TypeVar("T")

FIELD_MANAGER = "kubeharness"
DEFAULT_TIMEOUT = 30.0


def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | int | bool] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Send one request and return the decoded JSON response (``None`` for an empty body).

    Non-2xx responses raise ``ApiException`` (or its status-specific subclass).
    """
    params: list[tuple[str, str]] = []
    for key, value in (query or {}).items():
        params.append((key, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=params or None,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    resp = api.call_api(*serialized, _request_timeout=timeout)
    raw: bytes = resp.read() or b""  # type: ignore[no-untyped-call]
    text = raw.decode("utf-8", errors="replace")
    if not 200 <= int(resp.status) <= 299:
        raise ApiException.from_response(http_resp=resp, body=text, data=None)
    if not text.strip():
        return None
    return json.loads(text)


@dataclass(frozen=True)
class ResourceInfo:
    """What discovery says about one kind."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    subresources: frozenset[str]


_discovery_lock = threading.Lock()
_discovery: dict[tuple[str, str], dict[str, ResourceInfo]] = {}


def _server(api: ApiClient) -> str:
    return str(api.configuration.host)


def _group_version_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def discover(api: ApiClient, api_version: str, *, refresh: bool = False) -> dict[str, ResourceInfo]:
    """Kinds served in ``api_version`` (e.g. ``networking.istio.io/v1``), cached per server URL."""
    key = (_server(api), api_version)
    with _discovery_lock:
        cached = _discovery.get(key)
    if cached is not None and not refresh:
        return cached
    listing = request(api, "GET", _group_version_path(api_version))
    kinds: dict[str, ResourceInfo] = {}
    subresources: dict[str, set[str]] = {}
    for res in listing.get("resources", []):
        name = str(res["name"])
        if "/" in name:
            base, sub = name.split("/", 1)
            subresources.setdefault(base, set()).add(sub)
            continue
        kinds[str(res["kind"])] = ResourceInfo(
            api_version, str(res["kind"]), name, bool(res.get("namespaced")), frozenset()
        )
    result = {
        kind: ResourceInfo(
            info.api_version,
            info.kind,
            info.plural,
            info.namespaced,
            frozenset(subresources.get(info.plural, ())),
        )
        for kind, info in kinds.items()
    }
    with _discovery_lock:
        _discovery[key] = result
    return result


def forget_discovery(api: ApiClient | None = None) -> None:
    """Drop cached discovery (all servers, or ``api``'s), e.g. after installing CRDs."""
    with _discovery_lock:
        for key in [k for k in _discovery if api is None or k[0] == _server(api)]:
            del _discovery[key]


def resource_info(api: ApiClient, api_version: str, kind: str) -> ResourceInfo:
    """Discovery entry for ``kind``; refreshes the cache once if the kind is unknown."""
    kinds = discover(api, api_version)
    if kind not in kinds:
        kinds = discover(api, api_version, refresh=True)
    if kind not in kinds:
        raise LookupError(f"{kind} is not served in {api_version}")
    return kinds[kind]


def resource_path(
    api: ApiClient,
    api_version: str,
    kind: str,
    *,
    name: str | None = None,
    namespace: str | None = None,
    subresource: str | None = None,
) -> str:
    """REST path of a collection or an object (namespaced kinds need ``namespace``)."""
    info = resource_info(api, api_version, kind)
    path = _group_version_path(api_version)
    if info.namespaced:
        if not namespace:
            if name is not None:
                raise ValueError(f"{kind} {name!r} is namespaced: pass a namespace")
        else:
            path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{info.plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
        if subresource:
            path += f"/{subresource}"
    return path


def _meta(obj: Mapping[str, Any]) -> tuple[str, str, str, str | None]:
    meta = obj.get("metadata") or {}
    return str(obj["apiVersion"]), str(obj["kind"]), str(meta["name"]), meta.get("namespace")


def _write_query(
    field_manager: str | None, dry_run: bool, field_validation: str | None, force: bool | None = None
) -> dict[str, str | int | bool]:
    query: dict[str, str | int | bool] = {}
    if field_manager:
        query["fieldManager"] = field_manager
    if dry_run:
        query["dryRun"] = "All"
    if field_validation:
        query["fieldValidation"] = field_validation
    if force is not None:
        query["force"] = force
    return query


def apply(
    api: ApiClient,
    obj: Mapping[str, Any],
    *,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
    dry_run: bool = False,
    field_validation: str = "Strict",
    subresource: str | None = None,
) -> JSON:
    """Server-side apply ``obj`` (``PATCH`` with ``application/apply-patch+yaml``)."""
    api_version, kind, name, namespace = _meta(obj)
    path = resource_path(api, api_version, kind, name=name, namespace=namespace, subresource=subresource)
    result: JSON = request(
        api,
        "PATCH",
        path,
        query=_write_query(field_manager, dry_run, field_validation, force),
        body=dict(obj),
        content_type="application/apply-patch+yaml",
    )
    return result


def create(
    api: ApiClient,
    obj: Mapping[str, Any],
    *,
    field_manager: str = FIELD_MANAGER,
    dry_run: bool = False,
    field_validation: str = "Strict",
) -> JSON:
    """``POST`` ``obj`` to its collection."""
    api_version, kind, _, namespace = _meta(obj)
    path = resource_path(api, api_version, kind, namespace=namespace)
    result: JSON = request(
        api, "POST", path, query=_write_query(field_manager, dry_run, field_validation), body=dict(obj)
    )
    return result


def merge_patch(
    api: ApiClient,
    api_version: str,
    kind: str,
    name: str,
    patch: Mapping[str, Any],
    *,
    namespace: str | None = None,
    subresource: str | None = None,
    field_manager: str = FIELD_MANAGER,
) -> JSON:
    """JSON merge patch (RFC 7386) of an object or one of its subresources (e.g. ``status``)."""
    path = resource_path(api, api_version, kind, name=name, namespace=namespace, subresource=subresource)
    result: JSON = request(
        api,
        "PATCH",
        path,
        query=_write_query(field_manager, False, None),
        body=dict(patch),
        content_type="application/merge-patch+json",
    )
    return result


def get(api: ApiClient, api_version: str, kind: str, name: str, *, namespace: str | None = None) -> JSON:
    """``GET`` one object (raises ``NotFoundException`` when absent)."""
    result: JSON = request(api, "GET", resource_path(api, api_version, kind, name=name, namespace=namespace))
    return result


def get_or_none(
    api: ApiClient, api_version: str, kind: str, name: str, *, namespace: str | None = None
) -> JSON | None:
    """``GET`` one object, ``None`` on 404."""
    try:
        return get(api, api_version, kind, name, namespace=namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_items(
    api: ApiClient,
    api_version: str,
    kind: str,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
) -> list[JSON]:
    """``LIST`` a collection (all namespaces when ``namespace`` is ``None``)."""
    query: dict[str, str | int | bool] = {}
    if label_selector:
        query["labelSelector"] = label_selector
    result = request(api, "GET", resource_path(api, api_version, kind, namespace=namespace), query=query)
    items: list[JSON] = list(result.get("items") or [])
    return items


def delete(
    api: ApiClient, api_version: str, kind: str, name: str, *, namespace: str | None = None
) -> JSON | None:
    """``DELETE`` one object; returns ``None`` if it was already gone."""
    try:
        result: JSON = request(
            api, "DELETE", resource_path(api, api_version, kind, name=name, namespace=namespace)
        )
        return result
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_for(
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``check`` until it returns something other than ``None``/``False`` (bounded).

    Exceptions from ``check`` count as "not yet"; the last one is chained on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = check()
            if value is not None and value is not False:
                return value
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}") from last_error
        time.sleep(interval)
