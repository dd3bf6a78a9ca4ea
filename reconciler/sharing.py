"""Equal parts of JSON-like objects made one object: what many renderings of a few shapes cost.

Our objects, as translated and as listed, are thousands of renderings of a few shapes: the same
ports, the same gateway endpoints, the same ``trafficPolicy``, the same ``managedFields`` field
sets, each decoded or built as its own copy. Making equal parts one object roughly halves what they
hold (1,000 services in 3 clusters: the 6,500 translated objects 11.2 -> ~7 MB; one cluster's
2,167 listed objects 14.7 -> ~5 MB).

Equal strings in them become one string too (the same names, namespaces and hosts are written
in every cluster's copy of an object).

Safe because these objects are only ever read once made (:mod:`reconciler.engine.normalize` builds
new objects, translation's output is never changed in place: docs/architecture.md). Two rules keep
the values exactly as they were:

- equal means the same types and the same values in the same order: ``1``, ``1.0`` and ``True``
  (equal to Python) are never taken for one another, nor two maps ordered differently;
- a part is shared between objects, never twice within one: a map appearing twice in one object
  would be written as a YAML alias (``&id001``) in a diff, a snapshot or ``render``.
"""

from __future__ import annotations

from typing import Any

Shared = dict[Any, Any]
"""Key -> the one instance of the parts seen so far (kept by the caller for as long as it shares)."""


def share_parts(obj: dict[str, Any], shared: Shared) -> None:
    """Replace every map and list below ``obj`` by an equal one made of the parts in ``shared``
    (recording new parts there). Only ``obj`` itself is changed (its values replaced): it must be
    one object's own map, not shared with another."""
    used: set[int] = set()
    for key, value in obj.items():
        if type(value) is dict or type(value) is list:
            obj[key] = _share(value, shared, used)


def _share(value: Any, shared: Shared, used: set[int]) -> Any:
    """A map or list equal to ``value``, made of shared parts: the one in ``shared``, unless that
    one is already part of the same object (``used``), then a new one.

    Keyed by its children's identities once they are shared (equal children are then the same
    object), so nothing is encoded and each part is visited once. ``value`` itself is never
    changed: it may already be part of several objects (translation gives every object the same
    labels map), and changing it under one of them could make a part appear twice in another.
    """
    token: list[Any]
    new: Any
    if type(value) is dict:
        new, token = {}, ["d"]
        for k, child in value.items():
            if type(child) is dict or type(child) is list:
                child = _share(child, shared, used)
            elif type(child) is str:
                child = shared.setdefault(child, child)  # (a str key never equals a tuple key)
            new[k] = child
            token.append(k)
            token.append(_token(child))
    else:
        new, token = [], ["l"]
        for child in value:
            if type(child) is dict or type(child) is list:
                child = _share(child, shared, used)
            elif type(child) is str:
                child = shared.setdefault(child, child)
            new.append(child)
            token.append(_token(child))
    if not new:
        return new  # an empty map or list: not worth sharing, and it is often repeated in one object
    found = shared.setdefault(tuple(token), new)
    if id(found) in used:
        return new  # made here: part of nothing else
    used.add(id(found))
    return found


def _token(value: Any) -> Any:
    kind = type(value)
    if kind is dict or kind is list:
        # a shared part (or one of this object's own), kept alive by ``shared`` or by us; an empty
        # one by what it is, since it is never shared (the field sets of managedFields hold many)
        return id(value) if value else kind
    if kind is float:
        return (float, repr(value))  # -0.0 and 0.0 are equal, and hash alike, to Python
    return (kind, value)
