"""Namespace boundaries: which namespaces a policy may render objects into.

Anyone who can commit to the policy repository would otherwise be able to write Istio objects into
any namespace of every cluster (a TrafficPolicy selecting kube-dns renders a DestinationRule into
``kube-system``). The ``tenancy`` rules of ``reconciler.yaml`` bound that, in the spirit of Argo CD
AppProject ``sourceNamespaces``/``destinations``:

* A policy is identified by its own ``metadata.namespace``; the **first** rule whose
  ``policyNamespaces`` matches it decides. No matching rule: the policy may write nowhere
  (a ``tenancy`` section is an allowlist).
* Patterns are ``fnmatch`` globs (``team-a-*``); a ``!`` prefix denies, and a deny wins over any
  allow of the same list (so ``["*", "!kube-*"]`` reads as "everything except").
* The protected system namespaces are never matched by a glob: only a rule that names one
  literally allows it. Without a ``tenancy`` section every namespace except those is allowed, so
  an existing repository keeps working but cannot reach ``kube-system`` by accident or design.

Pure: no I/O, the same answer for the same input. Translation calls :meth:`Tenancy.check` for
every rendered object; a refusal makes the whole policy invalid (see ``reconciler.translate``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
"""Namespaces of the Kubernetes control plane: writable only where a rule names them literally."""

_GLOB_CHARS = frozenset("*?[")
_PATTERN = re.compile(r"^!?[a-z0-9*?\[\]!-]+$")


def pattern_problem(pattern: str) -> str:
    """Why ``pattern`` cannot be a namespace pattern, or ``""`` (used by reconciler.yaml validation)."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body:
        return f"empty pattern {pattern!r}"
    if not _PATTERN.match(pattern):
        # Kubernetes namespace names are lower-case DNS labels: anything else can never match, which
        # would silently turn an intended allow or deny into nothing.
        return f"{pattern!r} is not a namespace name or glob (lower-case letters, digits, '-', '*', '?', '[...]')"
    return ""


def is_literal(pattern: str) -> bool:
    return not any(c in _GLOB_CHARS for c in pattern)


@dataclass(frozen=True)
class TenancyRule:
    policy_namespaces: tuple[str, ...]
    destination_namespaces: tuple[str, ...]


@dataclass(frozen=True)
class Tenancy:
    """The effective boundaries: ``rules`` is None when ``reconciler.yaml`` has no ``tenancy`` section."""

    rules: tuple[TenancyRule, ...] | None = None
    unusable: str = ""
    """Non-empty when the configured boundaries could not be read: every write is refused (fail
    closed) rather than falling back to the permissive default a broken file would otherwise get."""

    @classmethod
    def from_rules(cls, rules: Iterable[tuple[Sequence[str], Sequence[str]]]) -> Tenancy:
        return cls(tuple(TenancyRule(tuple(p), tuple(d)) for p, d in rules))

    @classmethod
    def fail_closed(cls, why: str) -> Tenancy:
        return cls(unusable=why)

    def check(self, policy_namespace: str, destination_namespace: str) -> str | None:
        """Why a policy in ``policy_namespace`` may not write into ``destination_namespace``, or None."""
        if self.unusable:
            return f"tenancy boundaries are unknown, so nothing is written: {self.unusable}"
        if self.rules is None:
            if destination_namespace in PROTECTED_NAMESPACES:
                return (
                    f"namespace {destination_namespace} is not allowed for policies in namespace "
                    f"{policy_namespace} (reconciler.yaml tenancy; protected system namespace: only a "
                    "rule naming it literally allows it)"
                )
            return None
        for index, rule in enumerate(self.rules, start=1):
            if not _matches(rule.policy_namespaces, policy_namespace, protect=False):
                continue
            if _matches(rule.destination_namespaces, destination_namespace, protect=True):
                return None
            where = f"reconciler.yaml tenancy rule {index}"
            denied_by = _denied_by(rule.destination_namespaces, destination_namespace)
            if denied_by:
                detail = f"{where} denies it with {denied_by!r}"
            elif destination_namespace in PROTECTED_NAMESPACES and _glob_allows(
                rule.destination_namespaces, destination_namespace
            ):
                detail = f"{where}; protected system namespace: a glob never allows it, name it literally"
            else:
                allowed = ", ".join(rule.destination_namespaces) or "none"
                detail = f"{where} allows only: {allowed}"
            return (
                f"namespace {destination_namespace} is not allowed for policies in namespace "
                f"{policy_namespace} ({detail})"
            )
        return (
            f"namespace {destination_namespace} is not allowed for policies in namespace {policy_namespace} "
            "(no reconciler.yaml tenancy rule matches that policy namespace, so it may write nowhere)"
        )


DEFAULT_TENANCY = Tenancy()
"""No ``tenancy`` section: everything except the protected system namespaces."""


def _denied_by(patterns: Sequence[str], name: str) -> str:
    """The first ``!`` pattern matching ``name``; denials match protected namespaces too (denying is
    always safe)."""
    for p in patterns:
        if p.startswith("!") and fnmatch.fnmatchcase(name, p[1:]):
            return p
    return ""


def _glob_allows(patterns: Sequence[str], name: str) -> bool:
    return any(not p.startswith("!") and not is_literal(p) and fnmatch.fnmatchcase(name, p) for p in patterns)


def _matches(patterns: Sequence[str], name: str, *, protect: bool) -> bool:
    """Some allow pattern matches and no deny pattern does. With ``protect``, a protected namespace is
    matched only by a literal allow pattern."""
    if _denied_by(patterns, name):
        return False
    for p in patterns:
        if p.startswith("!"):
            continue
        if protect and name in PROTECTED_NAMESPACES and not is_literal(p):
            continue
        if fnmatch.fnmatchcase(name, p):
            return True
    return False
