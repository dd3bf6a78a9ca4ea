"""Durations the way Kubernetes and Istio users write them: `5s`, `120s`, `1m30s`, `250ms`, `1.5s`.

Istio's CRDs store durations as protobuf JSON strings; we always emit the canonical seconds form
(`90s`, `0.5s`) so the API server and istiod parse exactly what we mean and diffs stay stable.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT_NANOS = {
    "h": 3_600_000_000_000,
    "m": 60_000_000_000,
    "s": 1_000_000_000,
    "ms": 1_000_000,
    "us": 1_000,
    "µs": 1_000,
    "ns": 1,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")


def parse_duration(value: Any) -> timedelta:
    """Parse a Go/Kubernetes duration string; reject bare numbers (their unit would be a guess)."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a duration string such as '5s' or '1m30s', got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise ValueError("empty duration; write e.g. '5s'")
    pos, nanos = 0, Decimal(0)
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {value!r}: use units h, m, s, ms, us, ns (e.g. '1m30s')")
        nanos += Decimal(m.group(1)) * _UNIT_NANOS[m.group(2)]
        pos = m.end()
    return timedelta(microseconds=int(nanos / 1000))


def format_duration(value: timedelta) -> str:
    """Canonical protobuf-JSON form: whole or fractional seconds with an `s` suffix."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    seconds = Decimal(micros) / Decimal(1_000_000)
    text = format(seconds.normalize(), "f")
    return f"{text}s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^((\d+(\.\d*)?|\.\d+)(h|m|s|ms|us|µs|ns))+$",
            "examples": ["5s", "1m30s"],
        }
    ),
]
