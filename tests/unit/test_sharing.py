"""reconciler.sharing: equal parts become one object, values and YAML stay exactly as they were."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.sharing import share_parts
from reconciler.yamlio import to_yaml


def _endpoint(address: str, port: int = 15443) -> dict[str, Any]:
    return {"address": address, "ports": {"http": port}, "labels": {"tlsMode": "istio"}}


def _entry(name: str, *endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "ServiceEntry",
        "metadata": {"name": name, "labels": {"managed": "yes"}},
        "spec": {"hosts": [f"{name}.global"], "endpoints": list(endpoints), "ports": [{"number": 80}]},
    }


def _aliases(obj: dict[str, Any]) -> bool:
    text = to_yaml(obj)
    return "&id" in text or "*id" in text


def test_equal_parts_of_different_objects_become_one_and_values_stay() -> None:
    a, b = _entry("a", _endpoint("1.1.1.1"), _endpoint("2.2.2.2")), _entry("b", _endpoint("1.1.1.1"))
    before = copy.deepcopy([a, b])
    shared: dict[Any, Any] = {}
    for obj in (a, b):
        share_parts(obj, shared)
    assert [a, b] == before
    assert a["spec"]["endpoints"][0] is b["spec"]["endpoints"][0]
    assert a["spec"]["ports"] is b["spec"]["ports"]
    assert a["metadata"]["labels"] is b["metadata"]["labels"]
    assert a["spec"]["hosts"] is not b["spec"]["hosts"]
    assert a["metadata"] is not b["metadata"]  # the names differ


def test_a_part_is_never_twice_in_one_object_even_when_the_input_already_shares_it() -> None:
    """Translation gives several objects the same map. In an object that also holds an equal but
    distinct map before it, that map must not be given for both places: YAML would print an alias
    (found by the build cache test: ``ports: &id001``)."""
    ports = {"http": 15443}  # one map, in two objects
    a = _entry("a", {"address": "1.1.1.1", "ports": ports})
    b = _entry("b", {"address": "2.2.2.2", "ports": {"http": 15443}}, {"address": "3.3.3.3", "ports": ports})
    before = copy.deepcopy([a, b])
    shared: dict[Any, Any] = {}
    for obj in (a, b):
        share_parts(obj, shared)
    assert [a, b] == before
    assert not _aliases(a) and not _aliases(b)
    assert ports == {"http": 15443}  # the input's own parts are never changed


def test_equal_parts_repeated_in_one_object_are_kept_apart() -> None:
    obj = _entry("a", _endpoint("1.1.1.1"), _endpoint("1.1.1.1"))
    obj["spec"]["fields"] = {"f:a": {}, "f:b": {}, "f:c": {"f:d": {}}}
    share_parts(obj, {})
    assert not _aliases(obj)
    first, second = obj["spec"]["endpoints"]
    assert first == second and first is not second


def test_empty_parts_do_not_stop_what_holds_them_from_being_shared() -> None:
    """managedFields field sets hold many empty maps; the set itself is still shared."""
    fields = {"f:spec": {"f:hosts": {}, "f:ports": {}, "f:endpoints": {}}}
    a, b = _entry("a"), _entry("b")
    a["metadata"]["managedFields"] = [{"manager": "m", "fieldsV1": copy.deepcopy(fields)}]
    b["metadata"]["managedFields"] = [{"manager": "m", "fieldsV1": copy.deepcopy(fields)}]
    shared: dict[Any, Any] = {}
    share_parts(a, shared)
    share_parts(b, shared)
    assert a["metadata"]["managedFields"] is b["metadata"]["managedFields"]
    assert not _aliases(a)


def test_values_equal_only_to_python_stay_apart() -> None:
    """``1``, ``1.0`` and ``True`` are equal to Python (so are ``0.0`` and ``-0.0``) but not as JSON."""
    values: list[Any] = [1, 1.0, True, 0.0, -0.0]
    objects = [{"name": str(i), "spec": {"v": {"x": v}}} for i, v in enumerate(values)]
    shared: dict[Any, Any] = {}
    for obj in objects:
        share_parts(obj, shared)
    for obj, value in zip(objects, values, strict=True):
        got = obj["spec"]["v"]["x"]
        assert type(got) is type(value) and repr(got) == repr(value)
    ordered = [{"n": "a", "m": {"x": 1, "y": 2}}, {"n": "b", "m": {"y": 2, "x": 1}}]
    for obj in ordered:
        share_parts(obj, shared)
    assert list(ordered[1]["m"]) == ["y", "x"]


def test_equal_strings_become_one_string() -> None:
    a = {"kind": "X", "spec": {"host": "".join(["reviews", ".global"]), "hosts": ["".join(["a", "b"])]}}
    b = {"kind": "X", "spec": {"host": "".join(["reviews", ".global"]), "hosts": ["".join(["a", "b"]), "c"]}}
    assert a["spec"]["host"] is not b["spec"]["host"]
    shared: dict[Any, Any] = {}
    share_parts(a, shared)
    share_parts(b, shared)
    assert a["spec"]["host"] is b["spec"]["host"] and a["spec"]["hosts"][0] is b["spec"]["hosts"][0]
    assert a["spec"]["hosts"] == ["ab"] and b["spec"]["hosts"] == ["ab", "c"]
