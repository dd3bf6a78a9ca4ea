"""Deterministic, length-safe, collision-checked names and virtual addresses."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable

from reconciler.findings import ObjectKey

_INVALID = re.compile(r"[^a-z0-9-]+")
MAX_NAME = 63


def sanitize(text: str, max_len: int = MAX_NAME) -> str:
    """A DNS-1123 label from arbitrary text; long names keep a prefix plus a hash of the whole."""
    name = _INVALID.sub("-", text.lower()).strip("-") or "x"
    name = re.sub(r"-{2,}", "-", name)
    if len(name) <= max_len:
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{name[: max_len - len(digest) - 1].rstrip('-')}-{digest}"


def with_hash(name: str, salt: str, max_len: int = MAX_NAME) -> str:
    digest = hashlib.sha256(salt.encode()).hexdigest()[:8]
    return f"{name[: max_len - len(digest) - 1].rstrip('-')}-{digest}"


class NameAllocator:
    """Hands out object names per (cluster, kind, namespace), never the same one to two owners.

    Owners are served in a deterministic order by the caller (sorted policy keys), so the same
    input always yields the same names; a later owner whose natural name is taken gets a hashed one.
    """

    def __init__(self) -> None:
        self._taken: dict[tuple[str, str, str, str], str] = {}

    def allocate(self, cluster: str, kind: str, namespace: str, natural: str, owner: str) -> str:
        name = sanitize(natural)
        slot = (cluster, kind, namespace, name)
        holder = self._taken.get(slot)
        if holder is None or holder == owner:
            self._taken[slot] = owner
            return name
        hashed = with_hash(name, owner)
        self._taken[(cluster, kind, namespace, hashed)] = owner
        return hashed


_VIP_NET = ipaddress.ip_network("240.0.0.0/4")


def _fnv1_32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = (h * 0x01000193) & 0xFFFFFFFF
        h ^= b
    return h


def gloo_virtual_ip(name: str, namespace: str, salt: str = "") -> str:
    """The address Gloo Mesh gave a VirtualDestination (FNV-1 of its identity, in 240.0.0.0/4).

    Kept compatible so ServiceEntry addresses do not change when users move from Gloo Mesh.
    """
    h = _fnv1_32(f"{name}{namespace}local-resource{salt}".encode())
    octets = [h & 0xFF, (h >> 8) & 0xFF, (h >> 16) & 0xFF, (h >> 24) & 0xFF]
    octets[0] |= 0xF0
    return ".".join(str(o) for o in octets)


def allocate_virtual_ips(keys: Iterable[ObjectKey]) -> dict[ObjectKey, str]:
    """Deterministic, collision-free virtual addresses for VirtualDestinations.

    Gloo Mesh hashed without checking; here a collision (or an unusable address: 255.x.x.x, or a
    network/broadcast-looking .0/.255 last octet) is resolved by re-hashing with a counter, in
    sorted key order, so results depend only on the set of VirtualDestinations.
    """
    out: dict[ObjectKey, str] = {}
    used: set[str] = set()
    for key in sorted(keys):
        attempt = 0
        while True:
            ip = gloo_virtual_ip(key.name, key.namespace, "" if attempt == 0 else f"#{attempt}")
            first, last = int(ip.split(".")[0]), int(ip.split(".")[-1])
            if ip not in used and first != 255 and last not in (0, 255):
                break
            attempt += 1
        assert ipaddress.ip_address(ip) in _VIP_NET
        used.add(ip)
        out[key] = ip
    return out
