"""The CronJob's own way in: the pod's service account (``--in-cluster``), against a real API server.

The kubernetes client reads the token and the CA where a pod has them (pointed here at a real
token, issued by the API server's TokenRequest API, and at the cluster's real serving CA) and the
address from ``KUBERNETES_SERVICE_HOST``/``_PORT``; our transport sends that token with every
request, as the client's refresh hook has it (it reads a rotated file again; unit-tested in
``tests/unit/test_transport.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubeharness import Clusters, kube
from kubernetes.client import ApiClient

from reconciler.clusters.kube import NODES, KubeClient, KubeError
from reconciler.clusters.targets import IN_CLUSTER, ClusterTarget

SELF_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


def token_for(api: ApiClient, namespace: str, account: str) -> str:
    kube.create(
        api,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
    )
    answer = kube.request(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(answer["status"]["token"])


def test_in_cluster_service_account_reaches_the_api_server(
    clusters: Clusters,
    api_clients: dict[str, ApiClient],
    clean_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kubernetes.config.incluster_config as incluster

    name = "mgmt-cluster"
    plane = clusters[name]
    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text(token_for(api_clients[name], clean_namespace, "reconciler"))
    ca_file.write_bytes((plane.pki / "serving-ca.crt").read_bytes())
    monkeypatch.setattr(incluster, "SERVICE_TOKEN_FILENAME", str(token_file))
    monkeypatch.setattr(incluster, "SERVICE_CERT_FILENAME", str(ca_file))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(plane.port))

    client = KubeClient(ClusterTarget(name, IN_CLUSTER, None).api_client(), name, timeout=10, attempts=1)
    try:
        review = client.request(
            "post", SELF_REVIEW, body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        user = f"system:serviceaccount:{clean_namespace}:reconciler"
        assert review["status"]["userInfo"]["username"] == user
        with pytest.raises(KubeError) as denied:  # authenticated, and only as what it is
            client.list(NODES)
        assert denied.value.status == 403 and user in denied.value.message
    finally:
        client.close()
