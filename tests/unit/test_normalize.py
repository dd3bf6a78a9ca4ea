"""Owned-field projection: live objects compared on what our field manager owns."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.engine.normalize import (
    changed_paths,
    comparable_answer,
    comparable_desired,
    comparable_live,
    declared_fields,
    fields_taken,
    other_managers,
    owned_fields,
    same_as_live,
)

DESIRED: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "DestinationRule",
    "metadata": {
        "name": "r",
        "namespace": "ns",
        "labels": {"app.kubernetes.io/managed-by": "mesh-reconciler"},
    },
    "spec": {"host": "a.global", "trafficPolicy": {"outlierDetection": {"interval": "5s"}}},
}


def live_from(desired: dict[str, Any], **spec_extra: Any) -> dict[str, Any]:
    """A live object as the API server returns it after our apply, plus someone else's fields."""
    desired = copy.deepcopy(desired)
    spec = {**desired["spec"], **spec_extra}
    return {
        **desired,
        "metadata": {
            **desired["metadata"],
            "uid": "u1",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {**desired["metadata"]["labels"], "team": "payments"},
            "managedFields": [
                {"manager": "mesh-reconciler", "operation": "Apply", "fieldsV1": declared_fields(desired)},
                {
                    "manager": "kubectl-edit",
                    "operation": "Update",
                    "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}, "f:spec": {"f:exportTo": {}}},
                },
            ],
        },
        "spec": spec,
        "status": {"validationMessages": []},
    }


def test_server_fields_and_other_managers_fields_are_not_differences() -> None:
    live = live_from(DESIRED, exportTo=["*"])
    assert changed_paths(comparable_live(live), comparable_desired(DESIRED)) == []


def test_a_field_we_own_that_changed_is_a_difference() -> None:
    live = live_from(DESIRED)
    live["spec"]["trafficPolicy"]["outlierDetection"]["interval"] = "10s"
    assert changed_paths(comparable_live(live), comparable_desired(DESIRED)) == [
        "spec.trafficPolicy.outlierDetection.interval"
    ]


def test_a_field_we_set_before_and_no_longer_declare_is_reported() -> None:
    before = {**DESIRED, "spec": {**DESIRED["spec"], "subsets": [{"name": "v1", "labels": {"v": "1"}}]}}
    live = live_from(before)
    assert changed_paths(comparable_live(live), comparable_desired(DESIRED)) == ["spec.subsets"]


def test_numbers_compare_by_value() -> None:
    desired = {**DESIRED, "spec": {"host": "a", "weight": 100.0}}
    live = live_from(desired)
    live["spec"]["weight"] = 100
    assert changed_paths(comparable_live(live), comparable_desired(desired)) == []


def test_owned_fields_and_managers() -> None:
    live = live_from(DESIRED)
    assert owned_fields(live) == declared_fields(DESIRED)
    assert other_managers(live) == ["kubectl-edit"]
    assert owned_fields({"metadata": {}}) is None


def _full_comparison(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    return not changed_paths(comparable_live(live, declared_fields(desired)), comparable_desired(desired))


def test_same_as_live_answers_like_the_full_comparison_in_every_case() -> None:
    unchanged = live_from(DESIRED, exportTo=["*"])
    # Another manager took a field we declare, keeping its value: only the merged view sees it is equal.
    taken_same = copy.deepcopy(unchanged)
    taken_same["metadata"]["managedFields"] = [
        {"manager": "mesh-reconciler", "operation": "Apply", "fieldsV1": {"f:spec": {"f:host": {}}}},
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": declared_fields(DESIRED)},
    ]
    # ... and changing it.
    taken_changed = copy.deepcopy(taken_same)
    taken_changed["spec"]["trafficPolicy"]["outlierDetection"]["interval"] = "9s"
    # A field we set before and no longer declare: a removal.
    no_longer = live_from({**DESIRED, "spec": {**DESIRED["spec"], "subsets": [{"name": "v1"}]}})
    # Never applied by us (no managedFields of ours): what we declare is compared, nothing else.
    foreign = copy.deepcopy(unchanged)
    foreign["metadata"]["managedFields"] = []
    foreign_changed = copy.deepcopy(foreign)
    foreign_changed["spec"]["host"] = "b.global"
    # The spec exactly as declared (no one else's field in it), and only the metadata differs.
    exact = live_from(DESIRED)
    exact["metadata"]["labels"].pop("team")
    exact_relabelled = copy.deepcopy(exact)
    exact_relabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "helm"
    exact_old_annotation = copy.deepcopy(exact)  # an annotation we set before and no longer declare
    exact_old_annotation["metadata"]["annotations"] = {"mesh-reconciler.io/old": "x"}
    exact_old_annotation["metadata"]["managedFields"][0]["fieldsV1"] = declared_fields(exact_old_annotation)
    exact_other_annotation = copy.deepcopy(exact)  # someone else's annotation: not a difference
    exact_other_annotation["metadata"]["annotations"] = {"team": "payments"}
    cases = {
        "spec exactly as declared": (exact, True),
        "spec exactly as declared, our label changed": (exact_relabelled, False),
        "spec exactly as declared, annotation no longer declared": (exact_old_annotation, False),
        "spec exactly as declared, another manager's annotation": (exact_other_annotation, True),
        "unchanged": (unchanged, True),
        "taken, same value": (taken_same, True),
        "taken, changed": (taken_changed, False),
        "no longer declared": (no_longer, False),
        "foreign, same values": (foreign, True),
        "foreign, changed": (foreign_changed, False),
    }
    for name, (live, expected) in cases.items():
        assert _full_comparison(live, DESIRED) is expected, name
        assert same_as_live(live, DESIRED) is expected, name


def _managed(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {
            "managedFields": [{"manager": m, "operation": "Apply", "fieldsV1": f} for m, f in entries]
        }
    }


def test_fields_taken_names_only_managers_that_lost_a_declared_field() -> None:
    host = {"f:spec": {"f:host": {}}}
    interval = {"f:spec": {"f:trafficPolicy": {"f:outlierDetection": {"f:interval": {}}}}}
    both = {"f:spec": {"f:host": {}, "f:trafficPolicy": {"f:outlierDetection": {"f:interval": {}}}}}
    declared = declared_fields(DESIRED)
    before = _managed(("mesh-reconciler", both), ("observer", host), ("oncall", interval), ("hpa", both))
    after = _managed(("mesh-reconciler", both), ("observer", host), ("hpa", host))
    # observer shared a value and kept it; oncall lost its only field (entry gone); hpa lost one of two
    assert fields_taken(before, after, declared) == ["hpa", "oncall"]
    assert fields_taken(before, before, declared) == []
    assert fields_taken(_managed(), after, declared) == []  # nobody else held anything before

    # Fields we do not declare, and a status subresource, may change between our LIST and our
    # apply for reasons of their own: losing them is not a take-over.
    export = {"f:spec": {"f:exportTo": {}}}
    status = {"f:status": {"f:conditions": {'k:{"type":"Ready"}': {".": {}, "f:status": {}}}}}
    before = _managed(("kubectl-edit", export), ("pilot-discovery", status))
    before["metadata"]["managedFields"][1]["subresource"] = "status"
    assert fields_taken(before, _managed(), declared) == []
    # A list we declare is atomic: losing an entry-level path inside it is losing the list.
    route = {"f:spec": {"f:http": {}}}
    vs_declared = {"f:spec": {"f:hosts": {}, "f:http": {}}}
    assert fields_taken(_managed(("helm", route)), _managed(), vs_declared) == ["helm"]


def test_an_answer_exactly_as_declared_is_compared_through_the_desired_object() -> None:
    """What the change set keeps of the server's answer has the value of its projection, but is
    built from the desired object when the answer holds exactly what was declared (memory: the
    answer is then freed); any other answer is projected as before."""
    exact = live_from(DESIRED)
    exact["metadata"]["labels"] = dict(DESIRED["metadata"]["labels"])  # nobody else's label
    after = comparable_answer(exact, DESIRED)
    assert after == comparable_live(exact, declared_fields(DESIRED))
    assert after["spec"] is DESIRED["spec"]  # the translated object's, not the answer's
    for answer in (live_from(DESIRED), live_from(DESIRED, exportTo=["*"])):  # someone else's label, field
        after = comparable_answer(answer, DESIRED)
        assert after == comparable_live(answer, declared_fields(DESIRED))
        assert after["spec"] is not DESIRED["spec"]
    drifted = live_from(DESIRED)
    drifted["spec"]["trafficPolicy"] = {"outlierDetection": {"interval": "9s"}}
    assert changed_paths(comparable_desired(DESIRED), comparable_answer(drifted, DESIRED)) == [
        "spec.trafficPolicy.outlierDetection.interval"
    ]
