"""Findings: the one way every stage reports a problem with user input.

A finding names where the problem is (file, line, column), which object it concerns and which field,
so a user can jump straight to it. Stages never raise on bad input; they return findings and carry on
with everything else.

A field is named by its :data:`FieldPath` (keys and list indices); :func:`format_path` is the one
place that spells it for people (``spec.localized.failoverDirectives[0]``).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

FieldPath = tuple[str | int, ...]
"""Where a field is inside a policy document, from the top: mapping keys and list indices, e.g.
``("spec", "localized", "failoverDirectives", 0)``. Findings carry it and the loader's position map
is keyed by it (see :meth:`reconciler.policy.loader.Loaded.location_of`)."""


def format_path(path: FieldPath) -> str:
    """``spec.localized.failoverDirectives[0]``: keys joined by dots, list indices in brackets."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of a policy: kind, namespace and name (what `kubectl get` would print)."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, ref: str) -> ObjectKey:
        kind, namespace, name = ref.split("/", 2)
        return cls(kind, namespace, name)


@dataclass(frozen=True)
class Location:
    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class Finding:
    severity: Severity
    message: str
    location: Location | None = None
    object: ObjectKey | None = None
    path: FieldPath = ()
    """The field the problem is in (empty: the object, or the file, as a whole)."""
    code: str = "Invalid"
    related: tuple[Location, ...] = dataclasses.field(default_factory=tuple)

    @property
    def field(self) -> str:
        """The field path as users read it (``spec.port.protocol``; empty when there is none)."""
        return format_path(self.path)

    def format(self) -> str:
        """`file:line:column: Kind namespace/name: field.path: message` (parts omitted when unknown)."""
        parts = []
        if self.location is not None:
            parts.append(str(self.location))
        if self.object is not None:
            parts.append(str(self.object))
        if field := self.field:
            parts.append(field)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.value, "code": self.code, "message": self.message}
        if self.location is not None:
            out.update(file=self.location.file, line=self.location.line, column=self.location.column)
        if self.object is not None:
            out.update(kind=self.object.kind, namespace=self.object.namespace, name=self.object.name)
        if field := self.field:
            out["field"] = field
        if self.related:
            out["related"] = [str(r) for r in self.related]
        return out

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def error(
    message: str,
    *,
    location: Location | None = None,
    object: ObjectKey | None = None,
    path: FieldPath = (),
    code: str = "Invalid",
    related: tuple[Location, ...] = (),
) -> Finding:
    return Finding(Severity.ERROR, message, location, object, path, code, related)


def warning(
    message: str,
    *,
    location: Location | None = None,
    object: ObjectKey | None = None,
    path: FieldPath = (),
    code: str = "Invalid",
    related: tuple[Location, ...] = (),
) -> Finding:
    return Finding(Severity.WARNING, message, location, object, path, code, related)
