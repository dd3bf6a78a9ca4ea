"""Kubeconfig files merged like kubectl merges them, parsed once, against real API servers."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from reconciler.clusters import targets
from reconciler.clusters.targets import merged_kubeconfig, resolve_targets
from reconciler.repo_config import RepoConfig

pytestmark = pytest.mark.integration


def _split(kubeconfig: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The harness kubeconfig as two files in two directories: mgmt-cluster inline, remote-cluster
    with its CA and client credentials in files named *relative* to the second kubeconfig."""
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())

    def only(name: str) -> dict[str, Any]:
        [ctx] = [c for c in config["contexts"] if c["name"] == name]
        cluster, user = ctx["context"]["cluster"], ctx["context"]["user"]
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": name,
            "contexts": [ctx],
            "clusters": [c for c in config["clusters"] if c["name"] == cluster],
            "users": [u for u in config["users"] if u["name"] == user],
        }

    first, second = tmp_path / "a" / "config", tmp_path / "b" / "config"
    for path in (first, second):
        path.parent.mkdir()
    first.write_text(yaml.safe_dump(only("mgmt-cluster")))
    remote = only("remote-cluster")
    for entry, section in ((remote["clusters"][0], "cluster"), (remote["users"][0], "user")):
        for key in [k for k in entry[section] if k.endswith("-data")]:
            name = f"{entry['name']}-{key.removesuffix('-data')}.pem"
            (second.parent / name).write_bytes(base64.b64decode(entry[section].pop(key)))
            entry[section][key.removesuffix("-data")] = name  # relative: resolved against b/
    second.write_text(yaml.safe_dump(remote))
    return first, second


def test_two_files_merge_and_relative_paths_resolve_against_their_own_file(
    kubeconfig: Path, tmp_path: Path
) -> None:
    first, second = _split(kubeconfig, tmp_path)
    found = resolve_targets(RepoConfig(), kubeconfigs=[f"{first}:{second}"])
    assert [(t.name, t.context) for t in found] == [
        ("mgmt-cluster", "mgmt-cluster"),
        ("remote-cluster", "remote-cluster"),
    ]
    for target in found:  # a real request with each: the certificates were found and are right
        namespaces = client.CoreV1Api(target.api_client()).list_namespace()
        assert "default" in {n.metadata.name for n in namespaces.items}, target.name


def test_kubeconfig_parsed_once_per_content_and_again_when_it_changes(
    kubeconfig: Path, tmp_path: Path
) -> None:
    first, second = _split(kubeconfig, tmp_path)
    files = f"{first}:{second}"
    targets._merged.cache_clear()
    found = resolve_targets(RepoConfig(), kubeconfigs=[files])
    for target in found:
        target.api_client()
    assert targets._merged.cache_info().misses == 1  # one parse for the context list and both clients

    # Rotated under a long-running worker: the remote cluster moves (here, to a closed port).
    changed = yaml.safe_load(second.read_text())
    changed["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    second.write_text(yaml.safe_dump(changed) + "\n# rotated\n")
    os.utime(second, ns=(second.stat().st_mtime_ns + 1_000_000, second.stat().st_mtime_ns + 1_000_000))
    [remote] = [t for t in found if t.name == "remote-cluster"]
    assert remote.api_client().configuration.host == "https://127.0.0.1:9"
    assert targets._merged.cache_info().misses == 2
    assert merged_kubeconfig(files) is merged_kubeconfig(files)  # and then cached again
