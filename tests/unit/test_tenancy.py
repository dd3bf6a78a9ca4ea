"""Tenancy: namespace boundaries from reconciler.yaml, the rule matching and its effect on translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.clusters.inventory import Inventory
from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.findings import ObjectKey
from reconciler.policy import load_and_check
from reconciler.repo_config import load_repo_config
from reconciler.status import build_status
from reconciler.tenancy import DEFAULT_TENANCY, PROTECTED_NAMESPACES, Tenancy
from reconciler.translate import TENANCY_VIOLATION, Translation, translate
from tests.unit import topology as t
from tests.unit.helpers import write

# --- rule matching --------------------------------------------------------------------------------

TEAMS = Tenancy.from_rules(
    [
        (["team-a", "team-a-*"], ["team-a", "team-a-*", "istio-system"]),
        (["team-b"], ["*", "!istio-*"]),
        (["platform"], ["*", "kube-system"]),
        (["ops-*", "!ops-sandbox"], ["kube-*"]),
        (["locked"], []),
        (["*"], ["bookinfo"]),
    ]
)


@pytest.mark.parametrize(
    ("tenancy", "policy_ns", "dest_ns", "allowed"),
    [
        # no tenancy section: everything but the protected system namespaces
        (DEFAULT_TENANCY, "team-a", "bookinfo", True),
        (DEFAULT_TENANCY, "team-a", "istio-system", True),
        *((DEFAULT_TENANCY, "team-a", ns, False) for ns in sorted(PROTECTED_NAMESPACES)),
        (DEFAULT_TENANCY, "kube-system", "kube-system", False),  # a policy's namespace grants nothing
        # globs on both sides
        (TEAMS, "team-a", "team-a", True),
        (TEAMS, "team-a-canary", "team-a-extra", True),
        (TEAMS, "team-a", "istio-system", True),
        (TEAMS, "team-a", "bookinfo", False),  # first match wins: the catch-all rule is never reached
        (TEAMS, "team-ab", "team-a", False),  # team-a-* needs the dash; falls through to the catch-all
        (TEAMS, "team-ab", "bookinfo", True),
        # '!' denies, and wins over an allow of the same list
        (TEAMS, "team-b", "payments", True),
        (TEAMS, "team-b", "istio-system", False),
        (TEAMS, "team-b", "kube-system", False),  # '*' never matches a protected namespace
        # protected namespaces: only a literal allows them
        (TEAMS, "platform", "kube-system", True),
        (TEAMS, "platform", "kube-public", False),
        (TEAMS, "ops-1", "kube-system", False),  # 'kube-*' is a glob
        (TEAMS, "ops-1", "kube-flannel", True),  # ... which does match unprotected namespaces
        (TEAMS, "ops-sandbox", "kube-flannel", False),  # excluded from rule 4, catch-all says bookinfo
        (TEAMS, "ops-sandbox", "bookinfo", True),
        # an empty destination list locks a namespace out
        (TEAMS, "locked", "bookinfo", False),
        # with rules, a policy namespace no rule matches may write nowhere
        (Tenancy.from_rules([(["team-a"], ["*"])]), "team-b", "bookinfo", False),
        (Tenancy.from_rules([]), "team-a", "team-a", False),
        # unreadable configuration: fail closed
        (Tenancy.fail_closed("reconciler.yaml is invalid"), "team-a", "team-a", False),
    ],
)
def test_rule_matching(tenancy: Tenancy, policy_ns: str, dest_ns: str, allowed: bool) -> None:
    verdict = tenancy.check(policy_ns, dest_ns)
    assert (verdict is None) == allowed, verdict
    if verdict is not None:
        assert f"namespace {dest_ns} is not allowed for policies in namespace {policy_ns}" in verdict or (
            "tenancy boundaries are unknown" in verdict
        )


@pytest.mark.parametrize(
    ("policy_ns", "dest_ns", "explains"),
    [
        ("team-a", "bookinfo", "reconciler.yaml tenancy rule 1 allows only: team-a, team-a-*, istio-system"),
        ("team-b", "istio-system", "reconciler.yaml tenancy rule 2 denies it with '!istio-*'"),
        ("team-b", "kube-system", "protected system namespace: a glob never allows it, name it literally"),
        ("locked", "bookinfo", "rule 5 allows only: none"),
    ],
)
def test_denials_say_which_rule_and_why(policy_ns: str, dest_ns: str, explains: str) -> None:
    verdict = TEAMS.check(policy_ns, dest_ns)
    assert verdict is not None and explains in verdict


def test_default_denial_names_the_protected_namespace() -> None:
    assert DEFAULT_TENANCY.check("team-a", "kube-system") == (
        "namespace kube-system is not allowed for policies in namespace team-a (reconciler.yaml tenancy; "
        "protected system namespace: only a rule naming it literally allows it)"
    )


# --- reconciler.yaml ------------------------------------------------------------------------------


def test_repo_config_tenancy_section(tmp_path: Path) -> None:
    write(
        tmp_path,
        "reconciler.yaml",
        """
        tenancy:
          - policyNamespaces: [team-a, team-a-*]
            destinationNamespaces: [team-a, istio-system]
          - policyNamespaces: ["*"]
            destinationNamespaces: ["*", "!payments"]
        """,
    )
    config, findings = load_repo_config(tmp_path)
    assert findings == []
    assert config.namespace_boundaries() == Tenancy.from_rules(
        [(["team-a", "team-a-*"], ["team-a", "istio-system"]), (["*"], ["*", "!payments"])]
    )


def test_repo_config_without_tenancy_is_the_default(tmp_path: Path) -> None:
    assert load_repo_config(tmp_path)[0].namespace_boundaries() == DEFAULT_TENANCY  # no file at all
    write(tmp_path, "reconciler.yaml", "prune: {enabled: false}\n")
    assert load_repo_config(tmp_path)[0].namespace_boundaries() == DEFAULT_TENANCY


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{policyNamespace: [a], destinationNamespaces: [a]}",
            "tenancy[0].policyNamespace: unknown field (did you mean 'policyNamespaces'?)",
        ),
        ("{policyNamespaces: [], destinationNamespaces: [a]}", "must name at least one namespace"),
        (
            "{policyNamespaces: [Team-A], destinationNamespaces: [a]}",
            "'Team-A' is not a namespace name or glob",
        ),
        ("{policyNamespaces: [a], destinationNamespaces: ['!']}", "empty pattern '!'"),
        ("{policyNamespaces: [a], destinationNamespaces: ['!kube-*']}", "only '!' patterns match nothing"),
        ("{policyNamespaces: [a]}", "tenancy[0].destinationNamespaces: required field is missing"),
    ],
)
def test_broken_tenancy_section_fails_closed(tmp_path: Path, rule: str, message: str) -> None:
    """A typo must not fall back to the permissive default (every namespace but the system ones)."""
    write(tmp_path, "reconciler.yaml", f"tenancy:\n  - {rule}\n")
    config, [finding] = load_repo_config(tmp_path)
    assert finding.code == "InvalidConfig" and message in finding.message
    boundaries = config.namespace_boundaries()
    verdict = boundaries.check("a", "a")
    assert verdict is not None and "tenancy boundaries are unknown" in verdict and message in verdict


def test_unparseable_reconciler_yaml_fails_closed(tmp_path: Path) -> None:
    write(tmp_path, "reconciler.yaml", "tenancy: [\n")
    config, [finding] = load_repo_config(tmp_path)
    assert finding.code == "InvalidConfig"
    assert config.namespace_boundaries().check("bookinfo", "bookinfo") is not None


def test_broken_reconciler_yaml_without_tenancy_keeps_the_default(tmp_path: Path) -> None:
    """Nothing there could have narrowed the boundaries, so the usual fallback to defaults is safe."""
    write(tmp_path, "reconciler.yaml", "prune: {maxPruneRatio: 2}\n")
    config, [finding] = load_repo_config(tmp_path)
    assert finding.code == "InvalidConfig"
    assert config.namespace_boundaries() == DEFAULT_TENANCY


# --- translation ----------------------------------------------------------------------------------


def cluster_with_kube_dns() -> Inventory:
    objs = t.simple_cluster("east", "us-east-1", "us-east-1a", "192.0.2.1", ["10.1.0.1"])
    objs += [
        t.service(
            "kube-dns",
            namespace="kube-system",
            labels={"k8s-app": "kube-dns"},
            ports=[{"name": "dns-tcp", "port": 53, "targetPort": 53}],
        ),
        t.service("ratings", namespace="team-a"),
    ]
    return t.inventory({"east": objs})


def tp(name: str, namespace: str, services: list[tuple[str, str]], policy: str) -> str:
    refs = ", ".join(f"{{name: {n}, namespace: {ns}, clusterName: east}}" for ns, n in services)
    return f"""
apiVersion: networking.mesh.gloo.solo.io/v1
kind: TrafficPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  destinationSelector:
    - kubeServiceRefs: {{services: [{refs}]}}
  policy:
    {policy}
"""


DNS_TWEAK = tp(
    "dns-tweak", "team-a", [("kube-system", "kube-dns")], "outlierDetection: {consecutiveErrors: 2}"
)
REVIEWS_RETRIES = tp("reviews-retries", "bookinfo", [("bookinfo", "reviews")], "retries: {attempts: 3}")


def run(
    tmp: Path, *docs: str, tenancy: Tenancy = DEFAULT_TENANCY, inv: Inventory | None = None
) -> Translation:
    for i, doc in enumerate(docs):
        write(tmp, f"p{i}.yaml", doc)
    return translate(load_and_check(tmp), inv or cluster_with_kube_dns(), tenancy=tenancy)


def key(kind: str, namespace: str, name: str) -> ObjectKey:
    return ObjectKey(kind, namespace, name)


def test_policy_writing_into_kube_system_is_invalid_by_default(tmp_path: Path) -> None:
    tr = run(tmp_path, DNS_TWEAK, REVIEWS_RETRIES)
    dns = tr.outcomes[key("TrafficPolicy", "team-a", "dns-tweak")]
    [err] = dns.errors
    assert err.code == TENANCY_VIOLATION
    assert err.format() == (
        "p0.yaml:1:1: TrafficPolicy team-a/dns-tweak: would write DestinationRule "
        "kube-system/kube-dns in cluster east: namespace kube-system is not allowed for policies in namespace "
        "team-a (reconciler.yaml tenancy; protected system namespace: only a rule naming it literally allows it)"
    )
    assert dns.blocking and dns.objects == []
    assert dns.clusters == {"east"}  # the status still says where it points
    assert {o.namespace for o in tr.all_objects()} == {"bookinfo"}
    other = tr.outcomes[key("TrafficPolicy", "bookinfo", "reviews-retries")]
    assert other.valid and other.objects == [("east", "VirtualService", "bookinfo", "reviews")]


def test_one_object_out_of_bounds_invalidates_the_whole_policy(tmp_path: Path) -> None:
    both = tp(
        "everything", "team-a", [("team-a", "ratings"), ("kube-system", "kube-dns")], "requestTimeout: 2s"
    )
    tr = run(tmp_path, both)
    outcome = tr.outcomes[key("TrafficPolicy", "team-a", "everything")]
    [err] = outcome.errors
    assert "would write VirtualService kube-system/kube-dns in cluster east:" in err.message
    assert tr.all_objects() == []  # not even its VirtualService in its own namespace


def test_several_objects_in_one_denied_namespace_are_one_finding(tmp_path: Path) -> None:
    policy = "outlierDetection: {consecutiveErrors: 2}\n    requestTimeout: 2s"
    tr = run(tmp_path, tp("dns", "team-a", [("kube-system", "kube-dns")], policy))
    [err] = tr.outcomes[key("TrafficPolicy", "team-a", "dns")].errors
    assert (
        "would write DestinationRule kube-system/kube-dns in cluster east (and 1 more there):" in err.message
    )


def test_explicit_literal_rule_allows_kube_system(tmp_path: Path) -> None:
    tenancy = Tenancy.from_rules([(["team-a"], ["team-a", "kube-system"]), (["*"], ["*"])])
    tr = run(tmp_path, DNS_TWEAK, REVIEWS_RETRIES, tenancy=tenancy)
    assert all(o.valid for o in tr.outcomes.values())
    assert {(o.kind, o.namespace) for o in tr.all_objects()} == {
        ("DestinationRule", "kube-system"),
        ("VirtualService", "bookinfo"),
    }


def test_team_rule_keeps_a_team_out_of_other_namespaces(tmp_path: Path) -> None:
    tenancy = Tenancy.from_rules([(["team-a"], ["team-a"]), (["*"], ["*"])])
    intruder = tp("reviews-timeout", "team-a", [("bookinfo", "reviews")], "requestTimeout: 9s")
    own = tp("ratings-timeout", "team-a", [("team-a", "ratings")], "requestTimeout: 1s")
    tr = run(tmp_path, intruder, own, tenancy=tenancy)
    [err] = tr.outcomes[key("TrafficPolicy", "team-a", "reviews-timeout")].errors
    assert err.message.endswith(
        "namespace bookinfo is not allowed for policies in namespace team-a "
        "(reconciler.yaml tenancy rule 1 allows only: team-a)"
    )
    assert [o.ref for o in tr.all_objects()] == [("east", "VirtualService", "team-a", "ratings")]


def test_violator_contributes_nothing_to_a_shared_virtual_service(tmp_path: Path) -> None:
    """First in namespace/name order wins a route field: a violator that sorts first must neither win
    it nor make the legitimate policy lose it (as would happen if its objects were dropped afterwards)."""
    tenancy = Tenancy.from_rules([(["aaa-team"], ["aaa-team"]), (["*"], ["*"])])
    violator = tp("grab", "aaa-team", [("bookinfo", "reviews")], "retries: {attempts: 9}")
    tr = run(tmp_path, violator, REVIEWS_RETRIES, tenancy=tenancy)
    [vs] = tr.all_objects()
    assert vs.sources == (key("TrafficPolicy", "bookinfo", "reviews-retries"),)
    assert vs.body["spec"]["http"] == [
        {
            "route": [{"destination": {"host": "reviews.bookinfo.svc.cluster.local"}}],
            "retries": {"attempts": 3},
        }
    ]
    assert (
        vs.body["metadata"]["annotations"]["mesh-reconciler.io/sources"]
        == "TrafficPolicy/bookinfo/reviews-retries"
    )
    assert tr.outcomes[key("TrafficPolicy", "bookinfo", "reviews-retries")].findings == []  # no Conflict
    assert not tr.outcomes[key("TrafficPolicy", "aaa-team", "grab")].valid
    # Without the boundary the violator would have taken the field:
    untouched = translate(load_and_check(tmp_path), cluster_with_kube_dns())
    assert (
        untouched.outcomes[key("TrafficPolicy", "bookinfo", "reviews-retries")].errors[0].code == "Conflict"
    )


def vd(name: str, namespace: str) -> str:
    return f"""
apiVersion: networking.enterprise.mesh.gloo.solo.io/v1beta1
kind: VirtualDestination
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hostname: {name}.global
  port: {{number: 9080}}
  meshList: {{meshes: [{{name: istiod-istio-system-east, namespace: gloo-mesh}}]}}
  localized:
    destinationSelectors: [{{kubeServiceMatcher: {{labels: {{app: reviews}}}}}}]
"""


def test_virtual_destination_outside_bounds_and_its_dependents(tmp_path: Path) -> None:
    """A VirtualDestination renders into the mesh's namespace (istio-system); one not allowed there is
    invalid, a TrafficPolicy shifting to it is invalid as for any invalid VirtualDestination, and the
    virtual addresses of the others do not move."""
    tenancy = Tenancy.from_rules([(["team-a"], ["team-a", "bookinfo"]), (["*"], ["*"])])
    shift = tp(
        "to-global",
        "team-a",
        [("bookinfo", "reviews")],
        "trafficShift: {destinations: [{virtualDestination: {name: a-global, namespace: team-a}}]}",
    )
    docs = (vd("a-global", "team-a"), vd("b-global", "platform"), shift)
    inv = cluster_with_kube_dns()
    tr = run(tmp_path, *docs, tenancy=tenancy, inv=inv)
    [err] = tr.outcomes[key("VirtualDestination", "team-a", "a-global")].errors
    assert (
        "would write DestinationRule istio-system/vd-a-global-team-a in cluster east (and 1 more there)"
        in (err.message)
    )
    [shift_err] = tr.outcomes[key("TrafficPolicy", "team-a", "to-global")].errors
    assert "VirtualDestination team-a/a-global is invalid; fix it first" in shift_err.message
    assert {o.name for o in tr.all_objects()} == {"vd-b-global-platform"}
    free = translate(load_and_check(tmp_path), inv)
    [before] = [
        o for o in free.all_objects() if o.kind == "ServiceEntry" and o.name == "vd-b-global-platform"
    ]
    [after] = [o for o in tr.all_objects() if o.kind == "ServiceEntry"]
    assert after.body == before.body


def test_unusable_configuration_writes_nothing(tmp_path: Path) -> None:
    mesh = """
apiVersion: networking.mesh.gloo.solo.io/v1
kind: VirtualMesh
metadata: {name: vm, namespace: gloo-mesh}
spec:
  meshes: [{name: istiod-istio-system-east, namespace: gloo-mesh}]
"""
    tr = run(
        tmp_path, REVIEWS_RETRIES, vd("b-global", "platform"), mesh, tenancy=Tenancy.fail_closed("broken")
    )
    assert tr.all_objects() == []
    invalid = sorted(k.name for k, o in tr.outcomes.items() if not o.valid)
    assert invalid == ["b-global", "reviews-retries"]
    assert tr.outcomes[key("VirtualMesh", "gloo-mesh", "vm")].valid  # it writes nothing itself


def test_status_reports_the_violation_as_invalid(tmp_path: Path) -> None:
    tr = run(tmp_path, DNS_TWEAK, REVIEWS_RETRIES)
    policies = load_and_check(tmp_path)
    changes = ChangeSet(dry_run=False)
    result = changes.clusters.setdefault("east", ClusterResult("east"))
    for obj in tr.all_objects():
        result.changes.append(
            ObjectChange(obj.cluster, obj.kind, obj.namespace, obj.name, Action.CREATE, obj.sources)
        )
    docs = build_status(policies, tr, changes, cluster_with_kube_dns(), "0" * 40, {}, False)
    status: dict[str, Any] = docs[key("TrafficPolicy", "team-a", "dns-tweak")]["status"]
    assert status["state"] == "INVALID"
    [message] = status["errors"]
    assert "would write DestinationRule kube-system/kube-dns in cluster east" in message
    assert "protected system namespace" in message
    [accepted] = [c for c in status["conditions"] if c["type"] == "Accepted"]
    assert accepted["status"] == "False" and accepted["message"] == message
    assert docs[key("TrafficPolicy", "bookinfo", "reviews-retries")]["status"]["state"] == "ACCEPTED"
