"""Objects found equal to their desired object as they are listed (ClusterState.in_sync).

Discovery asks the engine's comparison of each listed object of ours and keeps of an equal one
only what is read afterwards (its desired object, or its identity and istiod's status). These
tests hold the engine to the same decisions it makes with the whole live objects.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from reconciler.clusters.discover import _SharingDecoder
from reconciler.clusters.inventory import (
    ClusterState,
    Inventory,
    settled_view,
)
from reconciler.clusters.kube import FIELD_MANAGER, ISTIO_RESOURCES
from reconciler.engine.changeset import Action
from reconciler.engine.normalize import declared_fields
from reconciler.engine.sync import Desired, SyncOptions, in_sync_checks, sync
from reconciler.findings import ObjectKey
from reconciler.translate.result import DesiredObject
from tests.unit.topology import owned

SOURCE = ObjectKey("VirtualDestination", "apps", "reviews")


def _live(body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``body`` as the API server returns it after our apply."""
    live = copy.deepcopy(body)
    live["metadata"].update(uid=f"uid-{body['metadata']['name']}", resourceVersion="7", generation=1)
    live["metadata"]["managedFields"] = [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": declared_fields(body)}
    ]
    live.update(extra)
    return live


def _desired(body: dict[str, Any], depends_on: frozenset[str] = frozenset()) -> DesiredObject:
    return DesiredObject("c1", body, (SOURCE,), depends_on)


ROUTE = {"http": [{"route": [{"destination": {"host": "reviews.global"}}]}]}
DR = owned("DestinationRule", "reviews", {"host": "reviews.global"})
VS = owned("VirtualService", "reviews", {"hosts": ["reviews.global"], **ROUTE})
STATUS = {"validationMessages": [{"type": {"code": "IST0101"}, "level": "Error"}], "observedGeneration": "1"}


def test_the_check_names_the_desired_object_an_equal_live_one_equals() -> None:
    check = in_sync_checks({"c1": [_desired(DR), _desired(VS)]})["c1"]
    assert check(_live(DR)) is DR
    drifted = _live(VS)
    drifted["spec"]["http"][0]["route"][0]["destination"]["host"] = "other.global"
    assert check(drifted) is None
    assert check(_live(owned("DestinationRule", "gone", {"host": "gone.global"}))) is None


def test_listed_pages_keep_of_equal_objects_only_their_desired_object_or_their_status() -> None:
    """The decoder of our kinds: equal objects are named in ``found``; one with istiod's status
    keeps it; one that differs, or one not desired, is kept whole."""
    drifted = _live(owned("VirtualService", "other", {"hosts": ["x"]}))
    page = {"metadata": {}, "items": [_live(DR), _live(VS, status=STATUS), drifted]}
    found: set[tuple[str, str, str]] = set()
    parts = (DR["metadata"], DR["spec"])
    check = in_sync_checks({"c1": [_desired(DR), _desired(VS)]})["c1"]
    decoder = _SharingDecoder().page(ISTIO_RESOURCES["DestinationRule"], check, found)
    dr, vs, other = decoder.decode(msgspec.json.encode(page))["items"]
    assert found == {
        ("DestinationRule", "istio-system", "reviews"),
        ("VirtualService", "istio-system", "reviews"),
    }
    assert dr is DR  # nothing of the listed object is kept...
    assert (DR["metadata"], DR["spec"]) == parts and DR["spec"] is parts[1]  # ...and DR is not changed
    assert vs["status"] == STATUS and "spec" not in vs and vs["metadata"]["generation"] == 1
    assert other == drifted


def test_an_object_found_equal_is_unchanged_without_being_compared_again() -> None:
    state = ClusterState("c1", managed=[DR], in_sync={("DestinationRule", "istio-system", "reviews")})
    changes = sync(Desired({"c1": [_desired(DR)]}, Inventory({"c1": state})), {}, SyncOptions())
    [change] = changes.clusters["c1"].changes
    assert change.action is Action.UNCHANGED


def test_a_held_route_found_equal_still_keeps_the_host_it_routes_to() -> None:
    """The VirtualService is held (it depends on an unreachable cluster) and what is kept of it
    is its status only: the host it routes to is read from its desired object, so the
    DestinationRule no longer desired is not pruned under a route that stays."""
    vs = settled_view(_live(VS, status=STATUS), VS)
    assert "spec" not in vs
    state = ClusterState(
        "c1", managed=[_live(DR), vs], in_sync={("VirtualService", "istio-system", "reviews")}
    )
    inventory = Inventory({"c1": state, "gone": ClusterState("gone", error="unreachable")})
    desired = Desired({"c1": [_desired(VS, frozenset({"gone"}))]}, inventory)
    changes = sync(desired, {}, SyncOptions())
    by_kind = {c.kind: c for c in changes.clusters["c1"].changes}
    assert by_kind["VirtualService"].action is Action.HELD
    assert by_kind["DestinationRule"].action is Action.HELD
    assert "still routes to reviews.global" in by_kind["DestinationRule"].message
