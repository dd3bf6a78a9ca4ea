"""Status reports: what the reconciler did with each policy, as data (no I/O, no clock).

One document per policy — valid or invalid — modelled on a Kubernetes ``status``: an overall
``state``, per-cluster results, and ``Accepted`` / ``ResolvedRefs`` / ``Programmed`` conditions.
Everything is derived from the run's records (PolicySet, Translation, ChangeSet, Inventory) and the
previous reports, and nothing depends on the time: the same inputs give the same documents, so an
unchanged run writes nothing and makes no commit.

State rules, in order:

* ``INVALID``: the policy failed loading/validation, or translation reported an error for it.
* ``PENDING``: dry run, or nothing was applied (``changes is None``).
* ``FAILED``: some target cluster could not be programmed — an object it contributed to was rejected
  (every contributing policy gets the API server's message), the cluster was unreachable, or an
  object was held because a cluster it depends on was unreachable.
* ``ACCEPTED``: applied (created/configured/unchanged) in every target cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from reconciler.clusters.inventory import (
    ISTIO_CRDS_MISSING,
    ControlPlaneMessage,
    Inventory,
    control_plane_messages,
)
from reconciler.digest import value_digest
from reconciler.engine.changeset import Action, ChangeSet, ObjectChange
from reconciler.findings import Finding, ObjectKey
from reconciler.policy.loader import PolicySet
from reconciler.policy.model import POLICY_KINDS
from reconciler.translate.result import PolicyOutcome, Translation

StatusDoc = dict[str, Any]


class State(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    INVALID = "INVALID"
    FAILED = "FAILED"
    PENDING = "PENDING"


_REF_CODES = frozenset({"RefNotFound", "RefInvalid", "MeshNotFound"})
"""Finding codes that mean a reference could not be resolved (ResolvedRefs=False)."""


def _api_version(policies: PolicySet, key: ObjectKey, previous: StatusDoc | None) -> str:
    policy = policies.get(key)
    if policy is not None:
        return policy.api_version
    if previous and isinstance(previous.get("apiVersion"), str):
        return str(previous["apiVersion"])
    model = POLICY_KINDS.get(key.kind)
    return model.API_VERSIONS[0] if model is not None and model.API_VERSIONS else ""


def _generation(previous: StatusDoc | None, spec_hash: str) -> int:
    """1 for a new policy; +1 whenever the content hash of its spec differs from the last report."""
    if not previous:
        return 1
    status = previous.get("status")
    if not isinstance(status, dict):
        return 1
    gen = status.get("observedGeneration")
    if not isinstance(gen, int) or isinstance(gen, bool) or gen < 1:
        return 1
    return gen if status.get("specHash") == spec_hash else gen + 1


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _object_label(change: ObjectChange) -> str:
    return f"{change.kind} {change.namespace}/{change.name}"


def _object_state(action: Action) -> str:
    if action in (Action.CREATE, Action.CONFIGURE, Action.UNCHANGED):
        return "applied"
    return action.value


def _condition(kind: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def _unreachable(changes: ChangeSet | None, inventory: Inventory | None) -> dict[str, str]:
    """Cluster -> why it could not be reached in this run (from the change set, else discovery)."""
    out: dict[str, str] = {}
    if inventory is not None:
        for name, state in inventory.clusters.items():
            if state.error:
                out[name] = state.error
    if changes is not None:
        for name, result in changes.clusters.items():
            if result.error:
                out[name] = result.error
    return out


def _held_by_unreachable(
    change: ObjectChange, translation: Translation | None, unreachable: Mapping[str, str]
) -> list[str]:
    """Unreachable clusters a held desired object depends on (held prunes and invalid holds: [])."""
    if change.action is not Action.HELD or translation is None:
        return []
    desired = translation.find(change.cluster, change.kind, change.namespace, change.name)
    if desired is None:
        return []
    return sorted(c for c in desired.depends_on if c in unreachable)


def _cluster_entry(
    cluster: str,
    entries: list[ObjectChange],
    *,
    invalid: bool,
    pending: bool,
    in_run: bool,
    translation: Translation | None,
    unreachable: Mapping[str, str],
    generation: int,
    analysis: Mapping[tuple[str, str, str, str], list[ControlPlaneMessage]] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """One ``clusters.<name>`` entry and the failure messages it contributes to ``errors``.

    ``analysis``: istiod's analysis messages on the live objects, by (cluster, kind, namespace, name).
    An ERROR on one of this policy's objects fails the cluster entry; a WARNING keeps it ACCEPTED.
    Either makes ``Programmed`` False: istiod did not program what the policy means.
    """
    # What the policy has in the cluster *now*: "applied" whether this run created, configured or
    # found it unchanged (so an idle run writes identical status), never objects pruned away.
    objects = sorted(
        (
            {"kind": c.kind, "namespace": c.namespace, "name": c.name, "state": _object_state(c.action)}
            for c in entries
            if c.action is not Action.PRUNE
        ),
        key=lambda o: (o["kind"], o["namespace"], o["name"], o["state"]),
    )
    problems: list[str] = []
    if cluster in unreachable:
        reason = unreachable[cluster]
        problems.append(reason if reason.startswith(ISTIO_CRDS_MISSING) else f"cluster unreachable: {reason}")
    for change in sorted(entries, key=lambda c: (c.kind, c.namespace, c.name)):
        if change.action.is_error:
            problems.append(f"{_object_label(change)}: {change.message or change.action.value}")
        else:
            deps = _held_by_unreachable(change, translation, unreachable)
            if deps:
                why = change.message or f"depends on unreachable cluster(s) {', '.join(deps)}"
                problems.append(f"held: {_object_label(change)}: {why}")
    problems = _unique(problems)
    control_plane: list[dict[str, str]] = []
    for change in sorted(entries, key=lambda c: (c.kind, c.namespace, c.name)):
        if change.action not in (Action.UNCHANGED, Action.HELD):
            continue  # created/configured/pruned now: what istiod said was about the previous object
        for msg in (analysis or {}).get((cluster, change.kind, change.namespace, change.name), []):
            if msg.level in ("ERROR", "WARNING"):
                control_plane.append(
                    {
                        "object": _object_label(change),
                        "code": msg.code,
                        "level": msg.level,
                        "message": msg.format(),
                    }
                )
    analysis_errors = [
        f"{m['object']}: istiod: {m['message']}" for m in control_plane if m["level"] == "ERROR"
    ]
    analysis_warnings = [
        f"{m['object']}: istiod: {m['message']}" for m in control_plane if m["level"] != "ERROR"
    ]

    if invalid:
        state = State.PENDING
        held = sum(1 for c in entries if c.action is Action.HELD)
        message = "policy is invalid; nothing was changed here" + (
            f" ({held} live object(s) kept as they are)" if held else ""
        )
        programmed = _condition("Programmed", "False", "Invalid", message, generation)
    elif pending:
        state = State.PENDING
        message = "; ".join(problems) or "dry run: nothing was applied"
        programmed = _condition("Programmed", "Unknown", "Pending", message, generation)
    elif problems:
        state = State.FAILED
        message = "; ".join(problems)
        programmed = _condition("Programmed", "False", "ApplyFailed", message, generation)
    elif analysis_errors or analysis_warnings:
        problems = analysis_errors
        state = State.FAILED if analysis_errors else State.ACCEPTED
        message = "; ".join(analysis_errors + analysis_warnings)
        programmed = _condition("Programmed", "False", "IstioAnalysis", message, generation)
    elif not in_run:
        state = State.PENDING
        message = "cluster was not part of this run"
        programmed = _condition("Programmed", "Unknown", "NotReconciled", message, generation)
    else:
        state = State.ACCEPTED
        message = f"{len(entries)} object(s) applied" if entries else "nothing to apply"
        programmed = _condition("Programmed", "True", "Programmed", message, generation)
    entry: dict[str, Any] = {
        "state": state.value,
        "objects": objects,
        "message": message,
        "conditions": [programmed],
    }
    if control_plane and not invalid and not pending:
        entry["controlPlane"] = control_plane
    return entry, (problems if state is State.FAILED else [])


def _policy_status(
    key: ObjectKey,
    *,
    policies: PolicySet,
    findings: list[Finding],
    outcome: PolicyOutcome | None,
    translation: Translation | None,
    changes: ChangeSet | None,
    unreachable: Mapping[str, str],
    commit: str,
    previous: StatusDoc | None,
    dry_run: bool,
    analysis: Mapping[tuple[str, str, str, str], list[ControlPlaneMessage]] | None = None,
) -> StatusDoc:
    spec_hash = policies.spec_hashes.get(key, "")
    policy = policies.get(key)
    generation = _generation(previous, spec_hash)
    invalid = key in policies.invalid or policy is None or (outcome is not None and not outcome.valid)
    pending = dry_run or changes is None

    all_findings = list(findings) + (list(outcome.findings) if outcome is not None else [])
    errors = _unique([f.format() for f in all_findings if f.is_error])
    warnings = _unique([f.format() for f in all_findings if not f.is_error])

    entries = changes.for_policy(key) if changes is not None else []
    targets = set(outcome.clusters) if outcome is not None else set()
    targets.update(c.cluster for c in entries)
    by_cluster: dict[str, list[ObjectChange]] = {c: [] for c in targets}
    for change in entries:
        by_cluster[change.cluster].append(change)

    clusters: dict[str, Any] = {}
    failures: list[str] = []
    for cluster in sorted(by_cluster):
        in_run = changes is not None and cluster in changes.clusters
        entry, problems = _cluster_entry(
            cluster,
            by_cluster[cluster],
            invalid=invalid,
            pending=pending,
            in_run=in_run,
            translation=translation,
            unreachable=unreachable,
            generation=generation,
            analysis=analysis,
        )
        if changes is None and outcome is not None:
            # Nothing was applied: list what would be written, without an action.
            entry["objects"] = sorted(
                (
                    {"kind": k, "namespace": ns, "name": n}
                    for (c, k, ns, n) in outcome.objects
                    if c == cluster
                ),
                key=lambda o: (o["kind"], o["namespace"], o["name"]),
            )
        clusters[cluster] = entry
        failures.extend(f"{cluster}: {p}" for p in problems)
        warnings.extend(
            f"{cluster}: {m['object']}: istiod: {m['message']}"
            for m in entry.get("controlPlane", [])
            if m["level"] != "ERROR"
        )

    states = {entry["state"] for entry in clusters.values()}
    if invalid:
        state = State.INVALID
    elif pending:
        state = State.PENDING
    elif State.FAILED.value in states:
        state = State.FAILED
    elif State.PENDING.value in states:
        state = State.PENDING
    else:
        state = State.ACCEPTED
    if state is State.FAILED:
        errors = _unique(errors + failures)

    # --- conditions
    if invalid:
        accepted = _condition(
            "Accepted", "False", "Invalid", errors[0] if errors else "policy is invalid", generation
        )
    else:
        accepted = _condition("Accepted", "True", "Accepted", "policy is valid", generation)
    ref_errors = [f for f in all_findings if f.is_error and f.code in _REF_CODES]
    if outcome is not None and outcome.unresolved:
        resolved = _condition("ResolvedRefs", "False", "UnresolvedRefs", outcome.unresolved, generation)
    elif ref_errors:
        resolved = _condition("ResolvedRefs", "False", ref_errors[0].code, ref_errors[0].message, generation)
    elif invalid and outcome is None:
        resolved = _condition(
            "ResolvedRefs", "Unknown", "Invalid", "not checked: the policy did not validate", generation
        )
    else:
        resolved = _condition("ResolvedRefs", "True", "ResolvedRefs", "all references resolved", generation)
    if state is State.INVALID:
        programmed = _condition(
            "Programmed",
            "False",
            "Invalid",
            "not applied: the policy is invalid; live objects are kept",
            generation,
        )
    elif state is State.PENDING:
        reason = "DryRun" if dry_run or (changes is not None and changes.dry_run) else "Pending"
        why = "dry run: nothing was applied" if reason == "DryRun" else "not applied yet"
        programmed = _condition("Programmed", "Unknown", reason, why, generation)
    elif state is State.FAILED:
        programmed = _condition("Programmed", "False", "ApplyFailed", "; ".join(failures), generation)
    else:
        what = f"applied to {len(clusters)} cluster(s)" if clusters else "valid; nothing to apply"
        programmed = _condition("Programmed", "True", "Programmed", what, generation)

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "observedCommit": commit,
        "specHash": spec_hash,
        "state": state.value,
        "errors": errors,
        "warnings": warnings,
        "clusters": clusters,
        "conditions": [accepted, resolved, programmed],
    }
    if key.kind == "VirtualDestination":
        selected = outcome.selected if outcome is not None else []
        status["selectedDestinations"] = [
            s.to_dict() for s in sorted(selected, key=lambda s: (s.cluster, s.namespace, s.name))
        ]
    return {
        "apiVersion": _api_version(policies, key, previous),
        "kind": key.kind,
        "metadata": {"name": key.name, "namespace": key.namespace},
        "status": status,
    }


def report_keys(policies: PolicySet) -> list[ObjectKey]:
    """The policies that get a report: every one in the repository, valid or invalid (sorted)."""
    return sorted({p.key for p in policies.policies} | set(policies.invalid))


def build_status(
    policies: PolicySet,
    translation: Translation | None,
    changes: ChangeSet | None,
    inventory: Inventory | None,
    commit: str,
    previous: Mapping[ObjectKey, StatusDoc] | None = None,
    dry_run: bool = False,
    only: Collection[ObjectKey] | None = None,
) -> dict[ObjectKey, StatusDoc]:
    """A status document for every policy in the repository (valid and invalid), keyed by identity.

    ``commit`` is the reconciled policy commit (``Checkout.policy_commit``), ``previous`` the reports
    read back from the status directory (drives ``observedGeneration``). A dry run, or
    ``changes=None``, gives PENDING for every valid policy. ``only``: build just these reports (the
    others are reused, see :func:`status_fingerprints`).
    """
    previous = previous or {}
    dry_run = dry_run or (changes is not None and changes.dry_run)
    unreachable = _unreachable(changes, inventory)
    findings_by_key: dict[ObjectKey, list[Finding]] = {}
    for finding in policies.findings:
        if finding.object is not None:
            findings_by_key.setdefault(finding.object, []).append(finding)
    keys = report_keys(policies)
    if only is not None:
        wanted = set(only)
        keys = [k for k in keys if k in wanted]
    analysis = _analysis(inventory)
    out: dict[ObjectKey, StatusDoc] = {}
    for key in keys:
        out[key] = _policy_status(
            key,
            policies=policies,
            findings=findings_by_key.get(key, []),
            outcome=translation.outcomes.get(key) if translation is not None else None,
            translation=translation,
            changes=changes,
            unreachable=unreachable,
            commit=commit,
            previous=previous.get(key),
            dry_run=dry_run,
            analysis=analysis,
        )
    return out


def status_fingerprints(
    build_key: str,
    keys: Iterable[ObjectKey],
    changes: ChangeSet,
    inventory: Inventory,
    commit: str,
    dry_run: bool = False,
) -> dict[ObjectKey, str]:
    """Per policy, a digest of everything :func:`build_status` reads for its report but the
    previous report: equal fingerprints give equal documents, so a report written from the same
    fingerprint, and untouched since, is reused as it is — not built, rendered or compared
    (:meth:`reconciler.status.files.RenderMemo.reusable`). One drifted object rebuilds the reports
    of the policies it came from, not all 1,500.

    Shared by every report: ``build_key`` (the policies and the translation,
    :attr:`reconciler.plan.Plan.build_key`), the commit, the dry-run flag, the clusters in the run
    with their errors and notes, the inventory's cluster errors and istiod's analysis messages on
    our objects. Each policy's own: the changes it contributed to (every field but the rendered
    diff, which no report shows). The previous report is not hashed: it is the one that fingerprint
    produced, which :func:`build_status` leaves as it is (the same inputs give the same documents).
    """
    shared = value_digest(
        (
            build_key,
            commit,
            bool(dry_run or changes.dry_run),
            [(name, r.error, r.notes) for name, r in sorted(changes.clusters.items())],
            sorted((name, state.error or "") for name, state in inventory.clusters.items()),
            sorted(_analysis(inventory).items()),
        )
    )
    own: dict[ObjectKey, list[Any]] = {}
    for change in changes.all():
        entry = (
            (change.cluster, change.kind, change.namespace, change.name, change.action.value),
            (change.sources, change.changed_paths, change.message, change.previous_managers, change.written),
        )
        for source in dict.fromkeys(change.sources):
            own.setdefault(source, []).append(entry)
    return {key: value_digest((shared, key, own.get(key, ()))) for key in keys}


def _analysis(inventory: Inventory | None) -> dict[tuple[str, str, str, str], list[ControlPlaneMessage]]:
    """istiod's analysis messages on our live objects, by (cluster, kind, namespace, name).

    Read from the objects as this run listed them, i.e. what istiod said after the *previous* write:
    a message about an object written in this run shows up in the next run's status.
    """
    out: dict[tuple[str, str, str, str], list[ControlPlaneMessage]] = {}
    if inventory is None:
        return out
    for name, state in inventory.clusters.items():
        for obj in state.managed:
            messages = control_plane_messages(obj)
            if messages:
                meta = obj.get("metadata") or {}
                out[(name, str(obj.get("kind")), str(meta.get("namespace", "")), str(meta.get("name")))] = (
                    messages
                )
    return out


def status_summary(docs: Mapping[ObjectKey, StatusDoc]) -> tuple[int, int, int, int]:
    """(accepted, invalid, failed, pending) counts."""
    counts = dict.fromkeys(State, 0)
    for doc in docs.values():
        raw = (doc.get("status") or {}).get("state")
        if not isinstance(raw, str):
            continue
        try:
            counts[State(raw)] += 1
        except ValueError:
            continue
    return counts[State.ACCEPTED], counts[State.INVALID], counts[State.FAILED], counts[State.PENDING]


def status_commit_message(docs: Mapping[ObjectKey, StatusDoc], commit: str) -> str:
    """``status: reconcile <short-sha>: N accepted, M invalid, K failed`` (+ pending when any)."""
    accepted, invalid, failed, pending = status_summary(docs)
    message = f"status: reconcile {commit[:7]}: {accepted} accepted, {invalid} invalid, {failed} failed"
    if pending:
        message += f", {pending} pending"
    return message
