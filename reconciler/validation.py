"""pydantic's validation errors, said the way every finding says them.

One formatting for policies (:mod:`reconciler.policy.loader`) and ``reconciler.yaml``
(:mod:`reconciler.repo_config`): the field as a :data:`~reconciler.findings.FieldPath`, and a
message a person can act on — "unknown field (did you mean 'outlierDetection'?); allowed here: ...",
"required field is missing" — rather than pydantic's internal wording.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from reconciler.findings import FieldPath


def validation_problems(exc: ValidationError, model: type[BaseModel]) -> list[tuple[FieldPath, str]]:
    """(field path, message) for each error of ``exc`` raised while validating ``model``."""
    out: list[tuple[FieldPath, str]] = []
    for err in exc.errors(include_url=False):
        loc: FieldPath = tuple(err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            known = _known_fields(model, loc[:-1])
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            if known:
                msg += f"; allowed here: {', '.join(sorted(known))}"
        elif err["type"] == "missing":
            msg = "required field is missing"
        out.append((loc, msg))
    return out


def _known_fields(model: type[BaseModel], loc: FieldPath) -> list[str]:
    """Field aliases accepted at ``loc`` (for "did you mean" hints on unknown fields)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        if isinstance(part, int):
            continue
        found = None
        for name, info in current.model_fields.items():
            aliases = {name, info.alias}
            va = info.validation_alias
            if isinstance(va, str):
                aliases.add(va)
            elif va is not None and hasattr(va, "choices"):
                aliases.update(c for c in va.choices if isinstance(c, str))
            if part in aliases:
                found = info.annotation
                break
        if found is None:
            return []
        current = _unwrap_model(found)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _unwrap_model(annotation: Any) -> Any:
    """Find the BaseModel inside Optional[...] / list[...] / Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None
