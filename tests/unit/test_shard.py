"""Sharding: which shard owns which cluster (rendezvous hashing), how a shard is chosen, and the
status rebuilt from every shard's per-cluster records equals the single-process status."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.engine.sync import SyncOptions
from reconciler.reconcile import lease_settings, shard_of, shard_sync_options
from reconciler.settings import Settings
from reconciler.shard import JOB_INDEX_ENV, Shard, ShardError, owner, resolve_shard
from reconciler.status import build_status, write_status_dir
from reconciler.status.results import (
    RESULTS_DIR,
    merge_results,
    read_cluster_results,
    remove_cluster_results,
    result_doc,
    result_from_doc,
    write_cluster_results,
)
from tests.unit.helpers import copy_example
from tests.unit.test_status import COMMIT, TP, VD, applied, plan

FLEET = [f"cluster-{i:04d}" for i in range(1000)]


# --- rendezvous hashing ---------------------------------------------------------------------------


def test_every_cluster_has_exactly_one_owner() -> None:
    for count in (1, 2, 3, 7):
        shards = [Shard(i, count) for i in range(count)]
        for cluster in FLEET[:200]:
            assert sum(s.owns(cluster) for s in shards) == 1
        assert sorted(c for s in shards for c in s.select(FLEET)) == sorted(FLEET)


def test_assignment_is_stable_across_releases() -> None:
    """The hash is part of the deployment contract: changing it would move every cluster at once
    (two versions of the Job would then write the same cluster). These values must never change."""
    assert [owner(c, 3) for c in ("mgmt-cluster", "remote-cluster", "cluster-3")] == [0, 0, 2]
    assert [owner(f"cluster-{i:04d}", 10) for i in range(8)] == [8, 7, 9, 0, 2, 3, 7, 0]


def test_adding_a_cluster_moves_no_other_cluster() -> None:
    before = {c: owner(c, 5) for c in FLEET[:300]}
    grown = [*FLEET[:300], "new-cluster-in-eu-west-3"]
    after = {c: owner(c, 5) for c in grown}
    assert {c: after[c] for c in before} == before
    shard = Shard(owner("new-cluster-in-eu-west-3", 5), 5)
    assert set(shard.select(grown)) - set(shard.select(FLEET[:300])) == {"new-cluster-in-eu-west-3"}


@pytest.mark.parametrize("count", [1, 2, 3, 9])
def test_one_more_shard_moves_only_its_share_and_only_to_it(count: int) -> None:
    moved = [c for c in FLEET if owner(c, count) != owner(c, count + 1)]
    assert all(owner(c, count + 1) == count for c in moved)  # never between two old shards
    share = len(moved) / len(FLEET)
    assert abs(share - 1 / (count + 1)) < 0.06, share  # about 1/(N+1) of the fleet


@pytest.mark.parametrize("count", [3, 10])
def test_balance(count: int) -> None:
    sizes = Counter(owner(c, count) for c in FLEET)
    assert sorted(sizes) == list(range(count))
    mean = len(FLEET) / count
    assert max(sizes.values()) <= 1.25 * mean and min(sizes.values()) >= 0.75 * mean, sizes


# --- the shard of a process -----------------------------------------------------------------------


def test_parse() -> None:
    assert Shard.parse("1/3") == Shard(1, 3)
    assert Shard.parse(" 2 ", count=4) == Shard(2, 4)
    assert Shard.parse("2/4", count=4) == Shard(2, 4)
    assert str(Shard(2, 4)) == "2/4"
    for bad, count in (("3/3", None), ("-1/3", None), ("a/3", None), ("1/0", None), ("1", None), ("1/3", 4)):
        with pytest.raises(ShardError):
            Shard.parse(bad, count)


def test_resolve_from_flag_or_indexed_job() -> None:
    assert resolve_shard(None, None, {JOB_INDEX_ENV: "1"}) is None  # not sharded unless asked
    assert resolve_shard("1/3", None, {}) == Shard(1, 3)
    assert resolve_shard("1/3", None, {JOB_INDEX_ENV: "2"}) == Shard(1, 3)  # the flag wins
    assert resolve_shard(None, 3, {JOB_INDEX_ENV: "2"}) == Shard(2, 3)
    assert resolve_shard("1", 3, {}) == Shard(1, 3)
    assert resolve_shard(None, 1, {JOB_INDEX_ENV: "0"}) is None  # one shard = the single process
    assert resolve_shard("0/1", None, {}) is None
    with pytest.raises(ShardError, match="JOB_COMPLETION_INDEX"):
        resolve_shard(None, 3, {})
    with pytest.raises(ShardError, match="between 0 and 2"):
        resolve_shard(None, 3, {JOB_INDEX_ENV: "3"})
    with pytest.raises(ShardError, match="not a number"):
        resolve_shard(None, 3, {JOB_INDEX_ENV: "x"})


def test_settings_become_the_shard_its_lease_and_its_write_set() -> None:
    effective = Settings(shard_count=3)
    shard = shard_of(effective, {JOB_INDEX_ENV: "1"})
    assert shard == Shard(1, 3)
    assert shard_of(Settings(), {JOB_INDEX_ENV: "1"}) is None
    assert lease_settings(effective, shard).name == "mesh-reconciler-shard-1-of-3"
    assert lease_settings(effective).name == "mesh-reconciler"  # the unsharded Lease is unchanged
    clusters = ["mgmt-cluster", "remote-cluster", "cluster-3"]
    assert [owner(c, 3) for c in clusters] == [0, 0, 2]
    assert shard_sync_options(SyncOptions(), Shard(0, 3), clusters).cluster_filter == {
        "mgmt-cluster",
        "remote-cluster",
    }
    # A shard that owns no cluster compares and writes nothing (an empty set is not "no filter").
    assert shard_sync_options(SyncOptions(), shard, clusters).cluster_filter == set()
    assert shard_sync_options(SyncOptions(), None, clusters).cluster_filter is None


# --- per-cluster records and the status rebuilt from them -----------------------------------------


def _mixed_changes(tr: object) -> ChangeSet:
    """A change set with a bit of everything the status reports: created, held because a cluster
    is unreachable, a failed prune with a message, and an unreachable cluster."""
    changes = applied(
        tr,  # type: ignore[arg-type]
        Action.CREATE,
        overrides={"mgmt-cluster/ServiceEntry": Action.HELD, "mgmt-cluster/VirtualService": Action.FAILED},
    )
    mgmt = changes.clusters["mgmt-cluster"]
    for change in mgmt.changes:
        if change.action is Action.FAILED:
            change.message = 'admission webhook "validation.istio.io" denied the request: bad host'
        if change.action is Action.HELD:
            change.message = "kept as it is live: depends on unreachable cluster(s) remote-cluster"
    mgmt.changes.append(
        ObjectChange("mgmt-cluster", "DestinationRule", "bookinfo", "old", Action.PRUNE, (TP,))
    )
    changes.clusters["remote-cluster"] = ClusterResult("remote-cluster", error="connection refused")
    return changes


def test_record_round_trip(tmp_path: Path) -> None:
    _, _, tr = plan(copy_example(tmp_path))
    changes = _mixed_changes(tr)
    for result in changes.clusters.values():
        back = result_from_doc(result_doc(result, COMMIT))
        assert back is not None and back.policy_commit == COMMIT
        assert back.result.error == result.error
        assert [
            (c.cluster, c.kind, c.namespace, c.name, c.action, c.sources, c.message)
            for c in back.result.changes
        ] == [
            (c.cluster, c.kind, c.namespace, c.name, c.action, c.sources, c.message) for c in result.changes
        ]
    for garbage in (
        None,
        [],
        {"cluster": 1},
        {"cluster": "a", "policyCommit": "x", "objects": [{"action": "x"}]},
    ):
        assert result_from_doc(garbage) is None


def test_status_from_every_shards_records_equals_the_single_process_status(tmp_path: Path) -> None:
    """Whatever order the shards push in, the last push writes the single-process status files."""
    root = copy_example(tmp_path)
    policies, inventory, tr = plan(root)
    changes = _mixed_changes(tr)
    fleet = sorted(inventory.clusters)
    single = build_status(policies, tr, changes, inventory, COMMIT, {}, False)
    expected_dir = tmp_path / "single"
    write_status_dir(expected_dir, "status", single, COMMIT)
    expected = {p.relative_to(expected_dir): p.read_bytes() for p in expected_dir.rglob("*") if p.is_file()}

    count = 4  # shards 0 and 3 own one cluster each, 1 and 2 none (and still push)
    assert sorted(owner(c, count) for c in fleet) == [0, 3]
    for order in itertools.permutations(range(count)):
        repo = tmp_path / "-".join(map(str, order))
        docs = {}
        for index in order:  # each push is rebuilt on top of the previous one
            shard = Shard(index, count)
            owned = shard.select(fleet)
            own = ChangeSet(dry_run=False, clusters={n: changes.clusters[n] for n in owned})
            merged = merge_results(own, owned, read_cluster_results(repo, "status"), fleet, COMMIT)
            docs = build_status(policies, tr, merged, None, COMMIT, {}, False)
            write_cluster_results(repo, "status", own.clusters, COMMIT, fleet)
            write_status_dir(repo, "status", docs, COMMIT)
        assert docs == single
        got = {
            p.relative_to(repo): p.read_bytes()
            for p in repo.rglob("*")
            if p.is_file() and RESULTS_DIR not in p.parts
        }
        assert got == expected
        assert sorted(read_cluster_results(repo, "status")) == fleet


def test_records_of_another_commit_or_a_departed_cluster_do_not_count(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    policies, inventory, tr = plan(root)
    changes = applied(tr, Action.CREATE)
    fleet = sorted(inventory.clusters)
    repo = tmp_path / "repo"
    stale = {"remote-cluster": changes.clusters["remote-cluster"]}
    write_cluster_results(repo, "status", stale, "f" * 40, [*fleet, "gone-cluster"])
    write_cluster_results(
        repo, "status", {"gone-cluster": ClusterResult("gone-cluster")}, COMMIT, [*fleet, "gone-cluster"]
    )
    assert sorted(read_cluster_results(repo, "status")) == ["gone-cluster", "remote-cluster"]

    own = ChangeSet(dry_run=False, clusters={"mgmt-cluster": changes.clusters["mgmt-cluster"]})
    merged = merge_results(own, ["mgmt-cluster"], read_cluster_results(repo, "status"), fleet, COMMIT)
    assert sorted(merged.clusters) == ["mgmt-cluster"]  # remote-cluster's record is of another commit
    vd = build_status(policies, tr, merged, None, COMMIT, {}, False)[VD]["status"]
    assert vd["state"] == "PENDING"
    assert vd["clusters"]["remote-cluster"]["message"] == "cluster was not part of this run"
    assert vd["clusters"]["mgmt-cluster"]["state"] == "ACCEPTED"

    assert write_cluster_results(repo, "status", own.clusters, COMMIT, fleet)
    assert sorted(read_cluster_results(repo, "status")) == ["mgmt-cluster", "remote-cluster"]
    assert not write_cluster_results(repo, "status", own.clusters, COMMIT, fleet)  # unchanged: no write
    assert remove_cluster_results(repo, "status")
    assert not (repo / "status" / RESULTS_DIR).exists()
    assert not remove_cluster_results(repo, "status")


def test_an_unusable_shard_setting_is_fatal_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.errors import ExitCode

    monkeypatch.delenv(JOB_INDEX_ENV, raising=False)
    from reconciler.reconcile import reconcile_once

    missing = tmp_path / "not-fetched.git"  # never reached: the shard is checked first
    for settings, message in (
        (Settings(repo=str(missing), shard="3/3"), "between 0 and 2"),
        (Settings(repo=str(missing), shard_count=3), "JOB_COMPLETION_INDEX"),
    ):
        outcome = reconcile_once(settings)
        assert outcome.exit_code == ExitCode.FATAL and message in outcome.error, outcome.error
        assert outcome.checkout is None
