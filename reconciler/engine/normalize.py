"""Compare desired and live objects on the fields *we* own, the way server-side apply sees them.

The comparable forms share structure with their inputs (no copies): they are only read — compared,
diffed and printed — and a no-op pass compares thousands of objects, so copying would be most of
its cost.

A live object carries fields nobody declared (``status``, ``uid``, ``resourceVersion``,
``managedFields``, API-server defaults) and maybe fields other managers set. Comparing those against
what we render would report false differences forever (Argo CD's best-known diff complaint). So
the live side is projected onto the fields our field manager owns, read from
``metadata.managedFields`` (``fieldsV1``): fields we set before and no longer declare still show
up — as removals — and everything else is ignored.
"""

from __future__ import annotations

from typing import Any

from reconciler.clusters.kube import FIELD_MANAGER
from reconciler.findings import format_path

IDENTITY_FIELDS = ("apiVersion", "kind")


def owned_fields(live: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
    """The ``fieldsV1`` set our manager holds through Apply operations (None: we own nothing)."""
    merged: dict[str, Any] | None = None
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            merged = _merge_sets(merged or {}, entry.get("fieldsV1") or {})
    return merged


def _merge_sets(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge_sets(out.get(key) or {}, value or {}) if key in out else value
    return out


def project(value: Any, fields: dict[str, Any]) -> Any:
    """Keep only the parts of ``value`` named by a ``fieldsV1`` set.

    ``f:name`` selects a map key; an empty set below it means the whole value. List entries
    (``k:``/``v:``/``i:``) select the list as a whole: Istio's lists are atomic.
    """
    if not fields or not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, sub in fields.items():
        if key == ".":
            continue
        if not key.startswith("f:"):
            return value  # list-entry selectors at this level: take it whole
        name = key[2:]
        if name not in value:
            continue
        child = value[name]
        if isinstance(child, list) or not sub or (len(sub) == 1 and "." in sub):  # no set per field
            out[name] = child
        else:
            out[name] = project(child, sub)
    return out


def comparable_live(live: dict[str, Any], declared: dict[str, Any] | None = None) -> dict[str, Any]:
    """The live object reduced to what we own plus what we declare now.

    ``declared`` (a fieldsV1 set, see :func:`declared_fields`) keeps fields we want to set even
    when another manager took them over (drift made with ``kubectl edit``), so the diff shows
    their live value rather than their absence.
    """
    fields = owned_fields(live)
    if declared is not None:
        fields = _merge_sets(fields or {}, declared)
    meta = live.get("metadata") or {}
    out: dict[str, Any] = {k: live.get(k) for k in IDENTITY_FIELDS}
    out["metadata"] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if fields is None:
        # Not applied by us (yet): compare everything we would declare.
        for key in ("labels", "annotations"):
            if meta.get(key):
                out["metadata"][key] = meta[key]
        if "spec" in live:
            out["spec"] = live["spec"]
        return out
    owned_meta = project(meta, fields.get("f:metadata") or {})
    for key in ("labels", "annotations"):
        if key in owned_meta:
            out["metadata"][key] = owned_meta[key]
    if "f:spec" in fields and "spec" in live:
        out["spec"] = project(live["spec"], fields["f:spec"])
    return out


def comparable_desired(desired: dict[str, Any]) -> dict[str, Any]:
    meta = desired.get("metadata") or {}
    out: dict[str, Any] = {k: desired.get(k) for k in IDENTITY_FIELDS}
    out["metadata"] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    for key in ("labels", "annotations"):
        if meta.get(key):
            out["metadata"][key] = meta[key]
    if "spec" in desired:
        out["spec"] = desired["spec"]
    return out


def comparable_answer(answer: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """The server's answer to applying ``desired``, as :func:`comparable_live` with the declared
    fields makes it, built from ``desired`` when the answer holds exactly what was declared (nearly
    always: see :func:`_exactly_as_declared`). Same value; but it shares the translated object's
    parts instead of holding on to the answer's, which a change set keeps to the end of the pass
    (a first sync at 1,000 services: 6,500 answers). Equal is ``==``: a desired ``100.0`` would
    print as such against the server's ``100``, which is why translation writes whole numbers as
    integers (``translate/traffic_policy._percent``)."""
    if _exactly_as_declared(answer, desired):
        return comparable_desired(desired)
    return comparable_live(answer, declared_fields(desired))


def same_as_live(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """True when applying ``desired`` would change nothing we own or declare in ``live``.

    The full comparison projects ``live`` onto the fields we own *merged with* the fields
    ``desired`` declares (:func:`comparable_live` with :func:`declared_fields`). Nearly every
    object of a pass is unchanged, and for those a cheaper test is exact: if the projection onto
    the fields we own alone already equals ``desired``, then every declared path is one we own, the
    merge adds nothing, and the full projection is that same view. Only when the cheap views differ
    is the full one built (drift by another manager, a field we no longer declare, a real change).
    """
    if _exactly_as_declared(live, desired):
        return True
    if "spec" in desired and "spec" in live and live["spec"] == desired["spec"]:
        # The spec as the server holds it is exactly the one we declare (no defaults, no one
        # else's field in it): projected on any set of fields that includes every declared one,
        # it is that spec again, so only the identity and the metadata are left to compare. This
        # skips projecting the spec, most of the cost of comparing an unchanged object.
        live, desired = _without_spec(live), _without_spec(desired)
    want = comparable_desired(desired)
    if comparable_live(live) == want:
        return True
    return not changed_paths(comparable_live(live, declared_fields(desired)), want)


def _exactly_as_declared(live: dict[str, Any], desired: dict[str, Any]) -> bool:
    """The live object holds exactly what ``desired`` declares, and nothing anyone else added to
    the fields we compare (the common case: only we write our objects). Then every projection of
    it that keeps the declared fields is ``desired`` itself, so it is unchanged, without building
    one. A label or annotation map present but empty on one side only is left to the full view."""
    if ("spec" in live) != ("spec" in desired) or live.get("spec") != desired.get("spec"):
        return False
    if any(live.get(k) != desired.get(k) for k in IDENTITY_FIELDS):
        return False
    live_meta, meta = live.get("metadata") or {}, desired.get("metadata") or {}
    for key in ("name", "namespace", "labels", "annotations"):
        value = meta.get(key)
        if live_meta.get(key) != value or (not value and key in live_meta):
            return False
    return True


def _without_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "spec"}


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Paths (``spec.trafficPolicy.outlierDetection.interval``) that differ; empty when equal.

    Plain equality first: nearly every object of a pass is unchanged, and ``==`` on the comparable
    forms is ~1000x cheaper than DeepDiff (which also treats 1 and 1.0 as equal, like ``==``), so
    DeepDiff only runs to *explain* an object that differs.
    """
    if before == after:
        return []
    from deepdiff import DeepDiff  # lazy: only a pass with differences pays for importing it

    diff = DeepDiff(before, after, ignore_numeric_type_changes=True, view="tree", verbose_level=2)
    paths: set[str] = set()
    for items in diff.values():
        for item in items:
            paths.add(format_path(tuple(item.path(output_format="list"))))
    return sorted(paths)


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    for key in a.keys() & b.keys():
        if key == ".":
            continue
        if not a[key] or not b[key] or _overlap(a[key], b[key]):
            return True
    return False


def field_owners(obj: dict[str, Any], declared: dict[str, Any], manager: str = FIELD_MANAGER) -> list[str]:
    """Other managers that own at least one of the ``declared`` fields (an apply would take them over)."""
    names = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        name = entry.get("manager")
        if name and name != manager and _overlap(entry.get("fieldsV1") or {}, declared):
            names.add(str(name))
    return sorted(names)


def fields_taken(
    before: dict[str, Any], after: dict[str, Any], declared: dict[str, Any], manager: str = FIELD_MANAGER
) -> list[str]:
    """Managers other than ours that own fewer of the ``declared`` fields in ``after`` than in ``before``.

    ``after`` is the server's answer to our forced apply of ``declared`` onto ``before``: the API
    server removes a field from every other manager that held it with a *different* value (taken
    over) and leaves it with one that held the same value (shared). So the managers that lost a
    declared field are exactly the ones a non-forced apply would have named in its 409, without
    sending that second request. Only declared fields of the main resource count: a manager can
    lose other fields between our LIST and our apply for reasons of its own (istiod rewriting a
    ``status`` condition), and that is not ours to report.
    """

    def owned(obj: dict[str, Any]) -> dict[str, set[tuple[str, ...]]]:
        out: dict[str, set[tuple[str, ...]]] = {}
        for entry in (obj.get("metadata") or {}).get("managedFields") or []:
            name = entry.get("manager")
            if name and name != manager and not entry.get("subresource"):
                _paths(entry.get("fieldsV1") or {}, (), out.setdefault(str(name), set()))
        return out

    had, has = owned(before), owned(after)
    return sorted(
        name
        for name, paths in had.items()
        if any(_declares(declared, path) for path in paths - has.get(name, set()))
    )


def _declares(declared: dict[str, Any], path: tuple[str, ...]) -> bool:
    """Whether a ``fieldsV1`` path lies within the ``declared`` set (an empty set below a field
    means the whole value: lists, and maps we set as a whole)."""
    node = declared
    for key in path:
        if not node:
            return True
        if key not in node:
            return False
        node = node[key]
    return True


def _paths(fields: dict[str, Any], prefix: tuple[str, ...], out: set[tuple[str, ...]]) -> None:
    """The leaves of a ``fieldsV1`` set: the fields owned (a parent is only their path)."""
    for key, value in fields.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            _paths(value, path, out)
        else:
            out.add(path)


def other_managers(obj: dict[str, Any], manager: str = FIELD_MANAGER) -> list[str]:
    """Field managers other than ours recorded on an object."""
    names = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        name = entry.get("manager")
        if name and name != manager:
            names.add(str(name))
    return sorted(names)


def declared_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The ``fieldsV1`` set a manifest declares (what an apply of it would own)."""

    def walk(value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return {f"f:{k}": walk(v) for k, v in value.items()}
        return {}

    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {"f:metadata": {}}
    for key in ("labels", "annotations"):
        if meta.get(key):
            out["f:metadata"][f"f:{key}"] = walk(meta[key])
    if "spec" in obj:
        out["f:spec"] = walk(obj["spec"])
    return out
