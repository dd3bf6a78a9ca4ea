"""Which clusters a shard writes: rendezvous hashing on the cluster name (pure, no I/O).

A fleet too large for one process runs as N shards — the pods of a Kubernetes Indexed Job, each with
its ``JOB_COMPLETION_INDEX`` — and every cluster is written by exactly one of them::

    owner(cluster, count) = the index i in [0, count) with the highest blake2b(i, cluster)

(highest random weight, "rendezvous" hashing). The owner depends on the cluster's own name and the
shard count only, so

* adding or removing a cluster moves no other cluster's work;
* going from N to N+1 shards moves only the clusters the new shard wins (about 1/(N+1) of them),
  each from its old owner to the new shard — never between two old shards;
* every process computes the same assignment with no coordination and no state.

``Shard(index, count)`` is the value type; ``count == 1`` is the single-process run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.errors import ReconcilerError

JOB_INDEX_ENV = "JOB_COMPLETION_INDEX"
"""Set by Kubernetes in every pod of a Job with ``completionMode: Indexed`` (0 .. completions-1)."""

MAX_SHARDS = 1000


class ShardError(ReconcilerError):
    """An unusable shard setting (``--shard``, ``--shard-count``, ``JOB_COMPLETION_INDEX``)."""


def _weight(cluster: str, index: int) -> int:
    digest = hashlib.blake2b(f"{index}\x00{cluster}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def owner(cluster: str, count: int) -> int:
    """The shard index (0 .. count-1) that writes ``cluster``."""
    if count < 1:
        raise ValueError(f"shard count must be at least 1, got {count}")
    # max() keeps the first of equal weights: a tie (2^-64) still has one deterministic winner.
    return max(range(count), key=lambda i: _weight(cluster, i))


@dataclass(frozen=True, order=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ShardError(f"shard count must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardError(f"shard index must be between 0 and {self.count - 1}, got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def single(self) -> bool:
        """One shard: the whole fleet in one process (exactly the unsharded run)."""
        return self.count == 1

    def owns(self, cluster: str) -> bool:
        return self.single or owner(cluster, self.count) == self.index

    def select(self, clusters: Iterable[str]) -> list[str]:
        """The clusters of ``clusters`` this shard writes, sorted."""
        return sorted(c for c in clusters if self.owns(c))

    def lease_name(self, base: str) -> str:
        """One run Lease per shard (``mesh-reconciler-shard-1-of-3``); the single run keeps ``base``."""
        return base if self.single else f"{base}-shard-{self.index}-of-{self.count}"

    @classmethod
    def parse(cls, text: str, count: int | None = None) -> Shard:
        """``"I/N"``, or ``"I"`` with ``count`` (``--shard-count``); both must agree when both given."""
        raw = text.strip()
        index_text, sep, count_text = raw.partition("/")
        try:
            index = int(index_text)
            parsed = int(count_text) if sep else count
        except ValueError:
            raise ShardError(f"--shard takes INDEX/COUNT (e.g. 0/3), not {text!r}") from None
        if parsed is None:
            raise ShardError(f"--shard {text!r} has no count: give INDEX/COUNT or --shard-count")
        if count is not None and sep and parsed != count:
            raise ShardError(f"--shard {text} disagrees with --shard-count {count}")
        return cls(index, parsed)


def resolve_shard(spec: str | None, count: int | None, environ: Mapping[str, str]) -> Shard | None:
    """The shard of this process, or None for an unsharded run.

    ``spec`` (``--shard``/``RECONCILER_SHARD``) wins; otherwise a ``count`` above 1
    (``--shard-count``/``RECONCILER_SHARD_COUNT``) takes the index from ``JOB_COMPLETION_INDEX``, so
    one pod template serves every index of an Indexed Job. ``0/1`` (or a count of 1) is unsharded.
    """
    if spec is not None and spec.strip():
        shard = Shard.parse(spec, count)
    elif count is None or count == 1:
        return None
    else:
        raw = environ.get(JOB_INDEX_ENV, "").strip()
        if not raw:
            raise ShardError(
                f"--shard-count {count} needs the shard index: run as an Indexed Job "
                f"({JOB_INDEX_ENV}) or give --shard INDEX/{count}"
            )
        try:
            index = int(raw)
        except ValueError:
            raise ShardError(f"{JOB_INDEX_ENV}={raw!r} is not a number") from None
        shard = Shard(index, count)
    return None if shard.single else shard
