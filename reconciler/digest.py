"""One digest of plain values, for the keys of what a pass reuses from the pass before.

A pickle *without its memo*: equal values give equal bytes whether they are one shared object or
equal copies (with the memo, a string shared in one pass and merely equal in the next would change
the digest, and a cache keyed by it would never hit). Values must be deterministic in their own
right — dicts in a stable insertion order, no sets — which is what the callers pass.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from typing import Any


def value_digest(value: Any) -> str:
    """sha256 (hex) of ``value``'s memo-free pickle."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(value)
    return hashlib.sha256(out.getbuffer()).hexdigest()
