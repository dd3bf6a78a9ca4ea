"""Memory of a pass's live objects: equal parts shared as listed, bodies released after the sync.

Both only change *which* objects hold the data, never the data: every test compares the values with
an untouched copy, and checks identity only where sharing (or not sharing) is the point.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from reconciler.clusters.discover import _share_equal_parts, _SharingDecoder
from reconciler.clusters.inventory import (
    READ_SHAPES,
    Inventory,
    build_cluster_state,
    control_plane_messages,
)
from reconciler.clusters.kube import ISTIO_RESOURCES, PageFeeder
from reconciler.yamlio import to_yaml
from tests.unit.topology import endpoints, gateway, istiod, node, service

LABELS = {"app.kubernetes.io/managed-by": "mesh-reconciler"}


def _entry(time: str, fields: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        "manager": "mesh-reconciler",
        "operation": "Apply",
        "time": time,
        **extra,
    }


def _service_entry(name: str, address: str, time: str = "2026-12-05T09:15:50Z") -> dict[str, Any]:
    gateway = {
        "address": "172.18.0.10",
        "labels": {"cluster": "mgmt"},
        "locality": "us-east-1",
        "ports": {"http": 15443},
    }
    local = {"address": address, "labels": {"cluster": "remote"}, "ports": {"http": 8080}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": name,
            "namespace": "istio-system",
            "labels": dict(LABELS),
            "annotations": {"mesh-reconciler.io/sources": f"VirtualDestination/gloo-mesh/{name}"},
            "managedFields": [_entry(time, {"f:spec": {"f:endpoints": {}, "f:hosts": {}, "f:ports": {}}})],
        },
        "spec": {
            "hosts": [f"{name}.global"],
            "endpoints": [gateway, local],
            "ports": [{"name": "http", "number": 8080, "protocol": "HTTP"}],
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
            "location": "MESH_INTERNAL",
        },
    }


def _as_listed(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a LIST decodes to: every object its own copies (as msgspec returns them)."""
    decoded: list[dict[str, Any]] = msgspec.json.decode(msgspec.json.encode(objects))
    return decoded


def test_equal_parts_of_listed_objects_become_one_object_and_keep_their_values() -> None:
    items = _as_listed([_service_entry("a", "10.96.0.1"), _service_entry("b", "10.96.0.2")])
    before = copy.deepcopy(items)
    _share_equal_parts(items, {})
    assert items == before  # the same values...
    a, b = items
    # ...with what is equal held once: maps, maps in lists, lists of shared maps, managedFields.
    assert a["metadata"]["labels"] is b["metadata"]["labels"]
    assert a["spec"]["endpoints"][0] is b["spec"]["endpoints"][0]  # the gateway both list
    assert a["spec"]["ports"] is b["spec"]["ports"]
    assert a["spec"]["trafficPolicy"] is b["spec"]["trafficPolicy"]
    assert a["metadata"]["managedFields"][0] is b["metadata"]["managedFields"][0]
    # what differs stays apart
    assert a["spec"]["endpoints"][1] is not b["spec"]["endpoints"][1]
    assert a["spec"]["endpoints"] is not b["spec"]["endpoints"]
    assert a["metadata"]["annotations"] is not b["metadata"]["annotations"]
    assert a["spec"]["hosts"] is not b["spec"]["hosts"]


def test_values_equal_only_to_python_are_not_shared() -> None:
    """Equal means equal JSON: ``1`` and ``1.0`` (or maps in another order) compare equal in Python
    but print differently, so sharing them would change what a diff shows."""
    one, other = _as_listed([_service_entry("a", "10.96.0.1"), _service_entry("b", "10.96.0.2")])
    other["spec"]["ports"][0]["number"] = 8080.0
    other["spec"]["trafficPolicy"] = {"tls": {"mode": "ISTIO_MUTUAL"}, "x": 1}
    one["spec"]["trafficPolicy"] = {"x": 1, "tls": {"mode": "ISTIO_MUTUAL"}}
    before = copy.deepcopy([one, other])
    _share_equal_parts([one, other], {})
    assert [one, other] == before
    assert one["spec"]["ports"] is not other["spec"]["ports"]
    assert one["spec"]["trafficPolicy"] is not other["spec"]["trafficPolicy"]
    assert (
        msgspec.json.encode(other["spec"]["ports"]) == b'[{"name":"http","number":8080.0,"protocol":"HTTP"}]'
    )


def test_managed_fields_entries_differing_in_any_value_stay_apart() -> None:
    a, b, c = _as_listed(
        [
            _service_entry("a", "10.96.0.1"),
            _service_entry("b", "10.96.0.2", time="2026-12-05T10:00:00Z"),
            _service_entry("c", "10.96.0.3"),
        ]
    )
    c["metadata"]["managedFields"].append(_entry("t", {"f:spec": {}}, subresource={"odd": True}))
    before = copy.deepcopy([a, b, c])
    _share_equal_parts([a, b, c], {})
    assert [a, b, c] == before
    [ea], [eb] = a["metadata"]["managedFields"], b["metadata"]["managedFields"]
    assert ea is not eb and ea["fieldsV1"] is eb["fieldsV1"]  # another time: the field set is still shared
    assert c["metadata"]["managedFields"][0] is ea
    assert c["metadata"]["managedFields"][1]["subresource"] == {"odd": True}  # kept as it is


def test_release_after_the_sync_keeps_what_status_reads_and_leaves_the_listed_objects_alone() -> None:
    listed = _as_listed([_service_entry("a", "10.96.0.1"), _service_entry("b", "10.96.0.2")])
    listed[1]["metadata"]["generation"] = 3
    listed[1]["status"] = {
        "observedGeneration": 3,
        "validationMessages": [{"type": {"code": "IST0101"}, "level": "ERROR"}],
    }
    untouched = copy.deepcopy(listed)
    state = build_cluster_state("remote", [node("n1", "us-east-1", "us-east-1a"), service("reviews")])
    state.managed, state.claimed = [dict(o) for o in listed], [dict(listed[0])]
    inventory = Inventory(clusters={"remote": state})
    assert inventory.service("remote", "bookinfo", "reviews") is not None and state.nodes
    messages = [control_plane_messages(o) for o in state.managed]
    inventory.release_compared()
    assert listed == untouched  # a snapshot export or a watch cache still holds them as listed
    assert state.claimed == [] and state.services == [] and state.nodes == {}  # translation's inputs
    assert inventory.service("remote", "bookinfo", "reviews") is None  # (not from a stale index)
    assert state.reachable  # what status reads of a cluster
    [view] = state.managed  # only the object istiod wrote a status on is still read
    assert view == {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "b", "namespace": "istio-system", "generation": 3},
        "status": listed[1]["status"],
    }
    assert control_plane_messages(view) == messages[1] and messages[1]  # the same analysis, not empty


def _noisy(obj: dict[str, Any]) -> dict[str, Any]:
    """An object with the fields a real API server adds, which discovery never reads."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    meta.update(uid="0f1e", resourceVersion="42", creationTimestamp="2026-12-05T09:15:50Z")
    meta["managedFields"] = [_entry("t", {"f:metadata": {"f:labels": {}}})]
    for ep in out.get("endpoints") or []:
        ep["targetRef"] = {"kind": "Pod", "name": "p", "namespace": "bookinfo", "uid": "1a2b"}
    return out


def test_the_read_shapes_keep_everything_discovery_reads() -> None:
    """Discovery decodes the kinds it only reads as ``READ_SHAPES``: the cluster state built from
    them equals the one built from whole objects, over every field the builder reads."""
    legacy = node("n2", None, None)
    legacy["metadata"]["labels"].update(
        {
            "failure-domain.beta.kubernetes.io/region": "eu-west-1",
            "failure-domain.beta.kubernetes.io/zone": "eu-west-1b",
        }
    )
    by_hostname = gateway("unused")
    by_hostname["metadata"]["name"] = "istio-ingressgateway"
    by_hostname["metadata"]["labels"] = {"istio": "ingressgateway"}
    by_hostname["status"] = {"loadBalancer": {"ingress": [{"hostname": "gw.example.com"}]}}
    by_external_ip = gateway("unused")
    by_external_ip["metadata"]["namespace"] = "istio-gateways"
    by_external_ip["spec"]["externalIPs"] = ["192.0.2.7"]
    del by_external_ip["status"]
    slices = endpoints("reviews", [("10.1.0.1", "n1"), ("10.1.0.2", "n2"), ("10.1.0.3", None)])
    slices["endpoints"][1]["conditions"] = {"ready": True, "terminating": True}
    slices["endpoints"][2]["zone"] = "eu-west-1b"
    not_ready = endpoints("ratings", [("10.1.0.9", "n1")])
    not_ready["endpoints"][0]["conditions"] = {"ready": False}
    fqdn = endpoints("ratings", [("ratings.example.com", None)])
    fqdn["metadata"]["name"], fqdn["addressType"] = "ratings-fqdn", "FQDN"
    objects = [
        node("n1", "us-east-1", "us-east-1a", "rack-1"),
        legacy,
        istiod(),
        istiod("istio-canary"),
        gateway("172.18.0.10"),
        by_hostname,
        by_external_ip,
        service(
            "reviews", ports=[{"name": "http", "port": 9080, "targetPort": "http", "appProtocol": "http"}]
        ),
        service("ratings", headless=True),
        slices,
        not_ready,
        fqdn,
    ]
    objects = [_noisy(o) for o in objects]
    lean: list[dict[str, Any]] = []
    for kind, shape in READ_SHAPES.items():
        page = msgspec.json.encode({"items": [o for o in objects if o["kind"] == kind]})
        assert PageFeeder(shape, lean.append).decode(page)["items"] == []
    assert len(lean) == len(objects)
    assert not any("managedFields" in o["metadata"] or "uid" in o["metadata"] for o in lean)  # skipped
    full = build_cluster_state("c", objects)
    assert (
        len(full.gateways) == 3 and full.services and full.meshes and len(full.nodes) == 2
    )  # a real check...
    assert build_cluster_state("c", lean) == full  # ...and the same state from what the shapes keep


def test_a_part_is_shared_between_objects_never_twice_within_one() -> None:
    """Two equal maps in one object stay two objects: one map twice in an object would be written
    as a YAML alias (``&id001``) in a diff or a snapshot."""
    twin = _service_entry("a", "10.96.0.1")
    twin["spec"]["endpoints"].append(copy.deepcopy(twin["spec"]["endpoints"][0]))  # the gateway twice
    twin["metadata"]["annotations"] = {}
    twin["metadata"]["labels"] = {}
    a, b = _as_listed([twin, _service_entry("b", "10.96.0.2")])
    _share_equal_parts([a, b], {})
    first, _, again = a["spec"]["endpoints"]
    assert first == again and first is not again
    assert first is b["spec"]["endpoints"][0]  # still shared with the other object
    assert a["metadata"]["labels"] is not a["metadata"]["annotations"]
    assert "&id" not in to_yaml(a) and "*id" not in to_yaml(a)


def test_pages_decoded_by_discovery_share_equal_parts_across_pages() -> None:
    """Discovery's decoder for our kinds: each LIST page decoded and its equal parts shared, also
    with the pages of other clusters decoded before it."""
    sharing = _SharingDecoder()
    pages = [
        sharing.page(ISTIO_RESOURCES["ServiceEntry"], None, set()).decode(
            msgspec.json.encode({"metadata": {}, "items": _as_listed([_service_entry(n, ip)])})
        )
        for n, ip in (("a", "10.96.0.1"), ("b", "10.96.0.2"))
    ]
    [a], [b] = (p["items"] for p in pages)
    assert a == _service_entry("a", "10.96.0.1") and b == _service_entry("b", "10.96.0.2")
    assert a["spec"]["trafficPolicy"] is b["spec"]["trafficPolicy"]
    assert a["metadata"]["managedFields"][0] is b["metadata"]["managedFields"][0]


def test_the_read_shapes_accept_null_wherever_the_api_server_may_write_it() -> None:
    """The API server writes an empty list as null in places (an EndpointSlice without endpoints):
    every map or list of the shapes may be null, and the state is built as from whole objects."""
    objects: list[dict[str, Any]] = [
        {"kind": "Node", "metadata": {"name": "n1", "labels": None}},
        {"kind": "Service", "metadata": {"name": "idle", "namespace": "apps", "labels": None}, "spec": None},
        {
            "kind": "EndpointSlice",
            "metadata": {
                "name": "idle-x",
                "namespace": "apps",
                "labels": {"kubernetes.io/service-name": "idle"},
            },
            "addressType": "IPv4",
            "ports": None,
            "endpoints": None,
        },
        {"kind": "Deployment", "metadata": None, "spec": {"template": {"spec": {"containers": None}}}},
        {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": None}},
        {"kind": "Deployment", "metadata": {"name": "e"}, "spec": None},
    ]
    lean: list[dict[str, Any]] = []
    for kind, shape in READ_SHAPES.items():
        page = msgspec.json.encode({"metadata": None, "items": [o for o in objects if o["kind"] == kind]})
        assert PageFeeder(shape, lean.append).decode(page)["items"] == []
    assert lean == objects  # nothing dropped: only fields the shapes name were given
    state = build_cluster_state("c", lean)
    [idle] = state.services
    assert idle.name == "idle" and idle.endpoints == ()
    assert PageFeeder(READ_SHAPES["Node"], lean.append).decode(b'{"items": null}') == {
        "metadata": None,
        "items": [],
    }


def test_an_item_that_is_not_an_object_is_left_for_the_reader_to_report() -> None:
    items: list[Any] = [None, "x", *_as_listed([_service_entry("a", "10.96.0.1")])]
    _share_equal_parts(items, {})
    assert items[:2] == [None, "x"] and items[2] == _service_entry("a", "10.96.0.1")


def test_discovery_lists_the_kinds_it_reads_in_the_order_the_state_is_built() -> None:
    """Each item is built into the state as it is decoded: nodes before slices before services."""
    from reconciler.clusters.discover import READ_LISTS
    from reconciler.clusters.inventory import StateBuilder

    listed = [resource.kind for resource, _ in READ_LISTS]
    assert listed == [kind for kind in StateBuilder.ORDER if kind in READ_SHAPES]


def test_a_service_listed_twice_keeps_its_endpoints_and_nodes_come_first() -> None:
    """A hand-written snapshot may list a service twice: both copies read as the old builder read
    them. And the builder takes nodes first (an endpoint's locality is its node's)."""
    from reconciler.clusters.inventory import StateBuilder

    objects = [node("n1", "us-east-1", "us-east-1a"), service("reviews"), service("reviews")]
    objects.append(endpoints("reviews", [("10.0.0.1", "n1")]))
    first, second = build_cluster_state("c", objects).services
    assert first.endpoints == second.endpoints and len(first.endpoints) == 1
    builder = StateBuilder("c")
    builder.add("Service", service("ratings"))
    with pytest.raises(ValueError, match="nodes are given before anything else"):
        builder.add("Node", node("n2", "us-east-1", "us-east-1b"))
