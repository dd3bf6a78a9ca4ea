"""JSON log lines carry the fields logs.py promises, so log queries need no regexes."""

from __future__ import annotations

import json
import logging

import pytest

from reconciler.engine.changeset import Action, ChangeSet, ClusterResult, ObjectChange
from reconciler.logs import JsonFormatter, log_changes


def test_changed_object_line_has_cluster_kind_namespace_name_action_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    changes = ChangeSet(dry_run=False)
    result = ClusterResult("mgmt-cluster")
    result.changes.append(
        ObjectChange("mgmt-cluster", "VirtualService", "bookinfo", "reviews", Action.HELD, message="why")
    )
    changes.clusters["mgmt-cluster"] = result
    with caplog.at_level(logging.INFO, logger="reconciler"):
        log_changes(changes)
    [line] = [json.loads(JsonFormatter().format(r)) for r in caplog.records if "reviews" in r.getMessage()]
    assert {k: line[k] for k in ("cluster", "kind", "namespace", "name", "action", "message")} == {
        "cluster": "mgmt-cluster",
        "kind": "VirtualService",
        "namespace": "bookinfo",
        "name": "reviews",
        "action": "held",
        "message": "why",
    }
    assert line["level"] == "warning"
