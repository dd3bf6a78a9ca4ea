"""The build cache: a pass reuses the last load + translation only when nothing it read changed.

Every test compares with a build made without the cache: a hit must be indistinguishable from a
rebuild, and every input the key names (policy commit, discovered state, code) must cause a miss.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler import buildcache
from reconciler.buildcache import BuildCache, inventory_digest, source_digest
from reconciler.clusters.inventory import ClusterState, Endpoint, Inventory, Service
from reconciler.commands.app import app
from reconciler.locality import Locality
from reconciler.plan import ClusterSource, Plan, build_plan
from reconciler.status.build import build_status

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "tests" / "golden" / "state" / "three-regions"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    shutil.copytree(STATE, tmp_path / "state")
    return tmp_path


def cache_for(work: Path, source: str = "commit-a:.") -> BuildCache:
    return BuildCache(work / "private", source, work / "policies" / "status")


def plan_with(work: Path, cache: BuildCache | None) -> Plan:
    return build_plan(work / "policies", ClusterSource(state=work / "state"), build_cache=cache)


def fingerprint(plan: Plan) -> tuple[object, ...]:
    """Everything later stages read from a build: desired objects, outcomes, policies, findings.
    (Not the field positions: only checks and translation read them, and a reused build has none.)"""
    objects = {
        c: [(o.kind, o.namespace, o.name, o.body, o.sources) for o in objs]
        for c, objs in plan.translation.objects.items()
    }
    outcomes = {k: (o.findings, o.blocking) for k, o in plan.translation.outcomes.items()}
    policies = [(p.key, p.obj.model_dump(), p.location, p.spec_hash) for p in plan.policies.policies]
    return objects, outcomes, policies, plan.policies.findings, plan.findings


def relabel_zone(work: Path, old: str, new: str) -> None:
    path = work / "state" / "cluster-3.yaml"
    text = path.read_text()
    assert f"topology.kubernetes.io/zone: {old}" in text
    path.write_text(
        text.replace(f"topology.kubernetes.io/zone: {old}", f"topology.kubernetes.io/zone: {new}")
    )


def test_a_second_pass_reuses_the_build_and_gets_the_same_plan(
    work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = fingerprint(plan_with(work, None))
    cache = cache_for(work)
    built = plan_with(work, cache)
    first = fingerprint(built)
    assert (cache.hits, cache.misses) == (0, 1)
    assert cache.path.is_file()
    with caplog.at_level(logging.INFO, logger="reconciler.plan"):
        reused = plan_with(work, cache)
        second = fingerprint(reused)
    # the file leaves the positions out; the pass that wrote it still has them
    assert all(p.positions for p in built.policies.policies)
    assert not any(p.positions for p in reused.policies.policies)
    assert (cache.hits, cache.misses) == (1, 1)
    assert "build reused: commit-a:. and the discovered state are unchanged" in caplog.text
    assert first == second == fresh
    assert sum(len(v) for v in fresh[0].values()) > 0  # there is something to compare


def test_a_new_policy_commit_rebuilds(work: Path) -> None:
    plan_with(work, cache_for(work, "commit-a:."))
    path = work / "policies" / "bookinfo-global.yaml"
    path.write_text(path.read_text().replace("baseEjectionTime: 120s", "baseEjectionTime: 60s"))
    cache = cache_for(work, "commit-b:.")
    after = fingerprint(plan_with(work, cache))
    assert (cache.hits, cache.misses) == (0, 1)
    assert after == fingerprint(plan_with(work, None))
    assert "60s" in repr(after[0])


def test_a_changed_discovered_state_rebuilds(work: Path) -> None:
    """A node moved to another zone changes localities, so failover order: never served stale."""
    cache = cache_for(work)
    before = fingerprint(plan_with(work, cache))
    relabel_zone(work, "eu-west-1a", "eu-west-1b")
    after = fingerprint(plan_with(work, cache))
    assert (cache.hits, cache.misses) == (0, 2)
    assert after == fingerprint(plan_with(work, None))
    assert after != before
    relabel_zone(work, "eu-west-1b", "eu-west-1a")
    assert fingerprint(plan_with(work, cache)) == before
    assert (cache.hits, cache.misses) == (0, 3)


def test_changed_code_rebuilds(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = cache_for(work)
    plan_with(work, cache)
    monkeypatch.setattr(buildcache, "code_digest", lambda: "another release")
    plan_with(work, cache)
    assert (cache.hits, cache.misses) == (0, 2)


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not a cache at all",
        buildcache.FORMAT,  # header only
        b"mesh-reconciler build cache 0\n",  # an older layout
    ],
)
def test_a_damaged_or_foreign_file_is_a_miss_and_is_replaced(work: Path, damage: bytes) -> None:
    cache = cache_for(work)
    plan_with(work, cache)
    cache.path.write_bytes(damage)
    assert fingerprint(plan_with(work, cache)) == fingerprint(plan_with(work, None))
    assert (cache.hits, cache.misses) == (0, 2)
    plan_with(work, cache)
    assert cache.hits == 1


def test_a_truncated_pickle_is_a_miss(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = cache_for(work)
    plan_with(work, cache)
    data = cache.path.read_bytes()
    cache.path.write_bytes(data[: len(data) // 2])  # right header and key, broken body
    with caplog.at_level(logging.WARNING, logger="reconciler.buildcache"):
        assert fingerprint(plan_with(work, cache)) == fingerprint(plan_with(work, None))
    assert "unreadable" in caplog.text
    assert (cache.hits, cache.misses) == (0, 2)


def test_not_used_when_the_loader_reads_a_directory_the_key_does_not_cover(work: Path) -> None:
    """The policy commit ignores the status directory; a build reading another one can't be keyed by it."""
    cache = BuildCache(work / "private", "commit-a:.", work / "policies" / "elsewhere")
    plan_with(work, cache)
    plan_with(work, cache)
    assert (cache.hits, cache.misses) == (0, 0)
    assert not cache.path.exists()


def test_an_unwritable_cache_only_costs_time(work: Path) -> None:
    (work / "private").write_text("a file where the directory should be")
    cache = cache_for(work)
    assert fingerprint(plan_with(work, cache)) == fingerprint(plan_with(work, None))
    assert fingerprint(plan_with(work, cache)) == fingerprint(plan_with(work, None))
    assert cache.hits == 0


def _inventory(labels: dict[str, str], zone: str) -> Inventory:
    svc = Service(
        "c1",
        "ns",
        "reviews",
        labels=labels,
        endpoints=(Endpoint("10.0.0.1", (("http", 9080),), "n1", Locality("r", zone)),),
        locality=Locality("r", zone),
    )
    return Inventory({"c1": ClusterState("c1", nodes={"n1": Locality("r", zone)}, services=[svc])})


def test_the_inventory_digest_depends_on_values_not_on_object_identity() -> None:
    shared = "reviews"
    a = _inventory({"app": shared, "team": shared}, "r-a")
    # equal strings that are distinct objects (a pickle with its memo would encode them differently)
    b = _inventory({"app": "".join(["rev", "iews"]), "team": "".join(["revi", "ews"])}, "".join(["r-", "a"]))
    assert inventory_digest(a) == inventory_digest(b)
    assert inventory_digest(a) != inventory_digest(_inventory({"app": shared, "team": shared}, "r-b"))
    assert inventory_digest(a) != inventory_digest(_inventory({"app": shared}, "r-a"))


def test_the_managed_objects_are_not_part_of_the_digest() -> None:
    """Only the engine reads them: live drift must not force a rebuild (it is compared, not built)."""
    a = _inventory({"app": "reviews"}, "r-a")
    b = _inventory({"app": "reviews"}, "r-a")
    b.clusters["c1"].managed.append(
        {"kind": "DestinationRule", "metadata": {"name": "x", "resourceVersion": "7"}}
    )
    assert inventory_digest(a) == inventory_digest(b)


def test_the_code_digest_sees_a_change_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    """A reproducible image build gives every file one mtime; a one-character fix keeps the size."""
    for name in ("a", "b"):
        (tmp_path / name / "translate").mkdir(parents=True)
        (tmp_path / name / "translate" / "failover.py").write_text(f"LIMIT = {'<' if name == 'a' else '>'}\n")
        (tmp_path / name / "notes.txt").write_text(name)  # not code: ignored
        for path in (tmp_path / name).rglob("*"):
            os.utime(path, ns=(0, 0))
    assert source_digest(tmp_path / "a") != source_digest(tmp_path / "b")
    (tmp_path / "b" / "translate" / "failover.py").write_text("LIMIT = <\n")
    assert source_digest(tmp_path / "a") == source_digest(tmp_path / "b")


# --- diff of a working tree: keyed by the content of the files the loader reads -------------------


def diff_cli(work: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["diff", str(work / "policies"), "--state", str(work / "state"), *args],
        env={"RECONCILER_BUILD_CACHE_DIR": str(work / "builds")},
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout


def a_policy_file(work: Path) -> Path:
    return work / "policies" / "bookinfo-global.yaml"


def test_diff_reuses_the_build_of_an_unchanged_tree(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = diff_cli(work)
    assert len(list((work / "builds").glob("*/build-cache.pickle"))) == 1
    with caplog.at_level(logging.INFO, logger="reconciler.plan"):
        second = diff_cli(work)
    assert f"build reused: the policy files under {work / 'policies'}" in caplog.text
    assert second == first
    assert first[0] == 1 and "+ created ServiceEntry/" in first[1]  # there is something to compare


def test_diff_sees_an_edit_that_keeps_size_and_mtime(work: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Content, not stat: an editor's save or a checkout can leave both as they were."""
    diff_cli(work)
    path = a_policy_file(work)
    text, stat = path.read_text(), path.stat()
    edited = text.replace("hostname: reviews.global", "hostname: reviewz.global", 1)
    assert edited != text and len(edited) == len(text)
    path.write_text(edited)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.INFO, logger="reconciler.plan"):
        _, out = diff_cli(work)
    assert "build reused" not in caplog.text
    assert "reviewz.global" in out and "reviews.global" not in out


def test_diff_with_the_build_cache_off_keeps_nothing(work: Path) -> None:
    first = diff_cli(work, "--build-cache-dir", "off")
    assert not (work / "builds").exists()
    assert diff_cli(work) == first  # and the cached path prints the same


def test_a_tree_edited_while_it_was_read_is_not_kept(work: Path) -> None:
    """The digest is taken before the load: a file changed in between must not land under it."""
    root = work / "policies"
    cache = buildcache.tree_build_cache(root, "status", work / "builds")
    path = a_policy_file(work)
    path.write_text(path.read_text() + "\n# edited after the digest\n")
    plan_with(work, cache)
    assert (cache.hits, cache.misses) == (0, 1)
    assert not cache.path.exists()
    cache = buildcache.tree_build_cache(root, "status", work / "builds")
    plan_with(work, cache)  # a quiet tree is kept
    assert cache.path.is_file()


def test_the_tree_digest_covers_reconciler_yaml_and_skips_the_status_directory(work: Path) -> None:
    root = work / "policies"
    before = buildcache.tree_digest(root, "status")
    (root / "status").mkdir(exist_ok=True)
    (root / "status" / "x.yaml").write_text("status: written by a pass\n")
    assert buildcache.tree_digest(root, "status") == before
    (root / "reconciler.yaml").write_text((root / "reconciler.yaml").read_text() + "\n# changed\n")
    assert buildcache.tree_digest(root, "status") != before


def test_a_reused_build_loads_a_policy_model_only_when_it_is_read(work: Path) -> None:
    """Status and findings of a no-op pass read keys, not models: those stay pickled until used."""
    built = plan_with(work, cache_for(work))
    reused = plan_with(work, cache_for(work))
    policies = reused.policies.policies
    assert [p.key for p in policies] == [p.key for p in built.policies.policies]
    assert not any("obj" in vars(p) for p in policies)  # keys listed, no model loaded
    # A status report rebuilt for every policy (a pass that changed something) loads none either.
    docs = build_status(reused.policies, reused.translation, None, reused.inventory, "c0ffee")
    assert {k: d["apiVersion"] for k, d in docs.items()} == {
        p.key: p.obj.api_version for p in built.policies.policies
    }
    assert not any("obj" in vars(p) for p in policies)
    first = policies[0]
    assert first.obj.model_dump() == built.policies.policies[0].obj.model_dump()
    assert "obj" in vars(first) and not any("obj" in vars(p) for p in policies[1:])
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        first.nope  # noqa: B018 (the lazy attribute is only ``obj``)


def test_the_kept_models_are_compressed_against_one_model_of_each_kind(work: Path) -> None:
    """Every pass reusing a build holds its models' pickles: they repeat the same class and field
    names, so they are compressed with a dictionary of one model per kind (shared by all)."""
    built = plan_with(work, cache_for(work))
    reused = plan_with(work, cache_for(work))
    models = [vars(p) for p in reused.policies.policies]
    dictionary = models[0]["_obj_dictionary"]
    assert all(m["_obj_dictionary"] is dictionary for m in models)  # one, not one per policy
    plain = sum(len(pickle.dumps(p.obj, protocol=pickle.HIGHEST_PROTOCOL)) for p in built.policies.policies)
    assert sum(len(m["_obj_pickle"]) for m in models) < plain / 3
    assert [p.obj.model_dump() for p in reused.policies.policies] == [
        p.obj.model_dump() for p in built.policies.policies
    ]


def test_a_reused_build_pickled_again_keeps_its_models(work: Path) -> None:
    """A model never loaded is still compressed: pickling the set again keeps it as it is (and its
    dictionary), instead of compressing the compressed bytes."""
    built = plan_with(work, cache_for(work))
    reused = plan_with(work, cache_for(work)).policies
    again = pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(reused))))
    assert [p.obj.model_dump() for p in again.policies] == [
        p.obj.model_dump() for p in built.policies.policies
    ]
    assert not any("_obj_dictionary" in vars(p) for p in again.policies)  # dropped once loaded
