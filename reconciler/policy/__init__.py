"""Policy stage: load YAML from a directory into validated models plus findings (no I/O beyond files)."""

from __future__ import annotations

from pathlib import Path

from reconciler.gcpause import cyclic_gc_paused
from reconciler.policy.checks import check_policy_set
from reconciler.policy.loader import Loaded, LoadedPolicy, PolicySet, load_policies
from reconciler.policy.model import (
    POLICY_KINDS,
    AnyPolicy,
    TrafficPolicy,
    VirtualDestination,
    VirtualMesh,
)

__all__ = [
    "POLICY_KINDS",
    "AnyPolicy",
    "Loaded",
    "LoadedPolicy",
    "PolicySet",
    "TrafficPolicy",
    "VirtualDestination",
    "VirtualMesh",
    "load_and_check",
    "load_policies",
]


def load_and_check(root: Path, status_path: str = "status") -> PolicySet:
    """Load every policy under root and run the cross-object checks."""
    with cyclic_gc_paused():  # everything loaded stays alive for the pass, and nothing is cyclic
        policies = load_policies(root, status_path=status_path)
        check_policy_set(policies)
    return policies
