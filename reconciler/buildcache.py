"""Reuse the last build (policies loaded, checked and translated) when nothing it read has changed.

A scheduled pass over an unchanged repository and an unchanged fleet rebuilds exactly what the
previous pass built: at 1,500 policies and 6,500 objects, loading and translating is ~0.35 s of CPU,
a third of a no-op pass. Argo CD's repo-server caches generated manifests per (revision, source
settings) for the same reason; this is that cache for one reconciler.

The key names *everything* the build reads, so a hit can only return what a rebuild would:

* the policy tree, given by the caller as ``source``: for ``reconcile``, the policy commit and
  where in the checkout the policies are; for ``diff`` of a working tree someone may be editing,
  :func:`tree_digest` — the bytes of every file the loader reads;
* what translation reads from discovery: every cluster's name, context, node localities, services
  with their endpoints, meshes, gateways and reachability (never the live objects we manage, which
  only the engine compares);
* the code that builds: this package's files (their bytes), the Python and pydantic versions.

One entry is kept (the last build): ``reconcile`` keeps it in the cache clone's git directory
(:attr:`reconciler.source.Checkout.private_dir`), next to the status render memo; ``diff`` in a
directory of its own per policy directory (:func:`reconciler.settings.Settings.build_cache_for`). Unreadable,
foreign or stale means a miss, which costs only the rebuild. The file is a pickle, so it is only
ever read from that private directory, which only this reconciler writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from reconciler.clusters.inventory import Inventory
from reconciler.digest import value_digest
from reconciler.policy import PolicySet
from reconciler.policy.loader import iter_policy_files
from reconciler.repo_config import FILENAME as REPO_CONFIG_FILENAME
from reconciler.translate import Translation

log = logging.getLogger(__name__)

FORMAT = b"mesh-reconciler build cache 1\n"
"""First line of the file; a new layout gets a new number (old files then simply miss)."""

FILE_NAME = "build-cache.pickle"


@cache
def code_digest() -> str:
    """Identity of the code that builds: a changed translation rule must never reuse an old build.

    The bytes of every module of the package (not their mtimes: a reproducible image build gives
    every file the same mtime, and a one-character fix keeps the size), plus the interpreter and
    pydantic versions the pickled models depend on. ~0.6 MB, hashed once per process.
    """
    import pydantic

    versions = f"{sys.version}\0{pydantic.VERSION}"
    return hashlib.sha256(
        f"{versions}\0{source_digest(Path(__file__).resolve().parent)}".encode()
    ).hexdigest()


def source_digest(package: Path) -> str:
    """sha256 over the relative path and the bytes of every ``*.py`` file under ``package``."""
    digest = hashlib.sha256()
    for directory, dirs, files in sorted(os.walk(package)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                digest.update(f"{os.path.relpath(path, package)}\0".encode())
                with open(path, "rb") as fh:
                    digest.update(hashlib.sha256(fh.read()).digest())
    return digest.hexdigest()


def tree_digest(root: Path, status_path: str) -> str:
    """Identity of a policy directory as the loader reads it: every file it would read (the same
    walk, :func:`reconciler.policy.loader.iter_policy_files`) and ``reconciler.yaml``, by relative
    path and bytes. Content, not mtimes: an editor or a ``git checkout`` can keep both size and
    mtime. ~35 ms for 1,500 files, a tenth of the build it can save."""
    digest = hashlib.sha256()
    files = [(root / REPO_CONFIG_FILENAME, None), *iter_policy_files(root, exclude=(status_path,))]
    for path, refusal in files:
        digest.update(f"{os.path.relpath(path, root)}\0".encode())
        if refusal is not None:  # refused (a symlink out of the tree): its target is never read
            digest.update(b"refused\0")
            continue
        try:
            with open(path, "rb") as fh:
                digest.update(hashlib.sha256(fh.read()).digest())
        except OSError as exc:  # absent, unreadable: what the loader will report, keyed as such
            digest.update(f"{type(exc).__name__}\0".encode())
    return digest.hexdigest()


def inventory_digest(inventory: Inventory) -> str:
    """Digest of the discovered state translation reads (every field but the managed objects).

    A memo-free pickle of value types built in LIST order (stable for unchanged objects): equal
    state gives equal bytes. When it does not (an endpoint moved, a node was relabelled, a cluster is down), the
    build runs again, which is exactly what must happen.
    """
    return value_digest(
        [
            (c.name, c.context, c.nodes, c.services, c.meshes, c.gateways, c.error, c.notes)
            for _, c in sorted(inventory.clusters.items())
        ]
    )


@dataclass
class Build:
    policies: PolicySet
    translation: Translation


def tree_build_cache(root: Path, status_path: str, directory: Path) -> BuildCache:
    """The build cache of a policy directory that may change under us (``diff`` of a working tree):
    keyed by the content of its files (:func:`tree_digest`), checked again before a build is kept."""

    def source() -> str:
        return f"tree:{tree_digest(root, status_path)}"

    return BuildCache(
        directory, source(), root / status_path, label=f"the policy files under {root}", recheck=source
    )


def _without_positions(build: Build) -> Build:
    """``build`` without the policies' field positions: only checks and translation read them, to
    locate the findings they make, and a reused build's findings are already made. They were a
    quarter of the file and of the time to load it (1,500 policies: 1.4 MB, 18 ms)."""
    policies = build.policies
    return Build(
        replace(policies, policies=[replace(p, positions={}) for p in policies.policies]),
        build.translation,
    )


@dataclass
class BuildCache:
    """The last build of one checkout, keyed by everything it read (see the module docstring)."""

    directory: Path
    source: str
    """The policy tree's identity, e.g. ``<policy commit>:<path>``."""
    uncovered: Path
    """The one directory whose changes ``source`` does not reflect (the status directory: our own
    status commits never change the policy commit). The cache serves only a build that skips it."""
    label: str = ""
    """``source`` for people (log lines), e.g. ``policy commit 0a1b2c3d4e5f``."""
    recheck: Callable[[], str] | None = None
    """For a source that can change under us (a working tree): ``source`` computed again. A build
    is kept only when it still matches after the build, so a file edited while the loader read the
    tree never lands under the digest of its older content."""
    hits: int = field(default=0, init=False)
    misses: int = field(default=0, init=False)

    @property
    def path(self) -> Path:
        return self.directory / FILE_NAME

    def serves(self, skipped: Path) -> bool:
        """Does ``source`` identify every file a build that skips ``skipped`` reads?"""
        return os.path.realpath(skipped) == os.path.realpath(self.uncovered)

    def key(self, root: Path, inventory: Inventory) -> bytes:
        text = f"{self.source}\0{root}\0{code_digest()}\0{inventory_digest(inventory)}"
        return hashlib.sha256(text.encode()).hexdigest().encode()

    def get(self, key: bytes) -> Build | None:
        """The cached build for ``key``, or None (absent, another key, unreadable, foreign)."""
        build = self._read(key)
        if build is None:
            self.misses += 1
        else:
            self.hits += 1
        return build

    def _read(self, key: bytes) -> Build | None:
        try:
            with self.path.open("rb") as fh:
                if fh.readline() != FORMAT or fh.readline().rstrip(b"\n") != key:
                    return None
                build = pickle.load(fh)
        except FileNotFoundError:
            return None
        except Exception as exc:  # any damage is a miss, never a failed pass
            log.warning("build cache %s unreadable (%s): rebuilding", self.path, exc)
            return None
        return build if isinstance(build, Build) else None

    def put(self, key: bytes, build: Build) -> None:
        """Keep ``build`` as the last one (atomically: a reader sees the old file or the new one)."""
        if self.recheck is not None and self.recheck() != self.source:
            log.info("build cache: the policy files changed while they were read; not kept")
            return
        tmp = self.path.with_name(f".{FILE_NAME}.{os.getpid()}")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as fh:
                fh.write(FORMAT + key + b"\n")
                pickle.dump(_without_positions(build), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        except Exception as exc:  # a cache that cannot be written only costs time
            log.warning("build cache %s not written (%s)", self.path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
