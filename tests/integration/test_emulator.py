"""The Kubernetes API stand-in behaves as the operator needs an API server to: the fixes the design page
lists for kmock's emulator, checked over HTTP with the same client the operator uses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from dreem_trainer.contract import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.k8s.harness import Kubectl, cluster_with_crd


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    with cluster_with_crd(tmp_path) as cluster:
        yield Kubectl(cluster.kubeconfig)


def job() -> dict[str, object]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "j"}, "spec": {}}


def test_writes_bump_resource_version_and_creates_assign_identity(kubectl: Kubectl) -> None:
    created = kubectl.apply_job(job())
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and meta["generation"] == 1
    kubectl.patch_job("j", {"spec": {"image": "trainer:2"}})
    patched = kubectl.job("j")["metadata"]
    assert int(patched["resourceVersion"]) > int(meta["resourceVersion"])
    assert patched["generation"] == 2 and patched["uid"] == meta["uid"]


def test_status_subresource_and_main_resource_change_only_their_part(kubectl: Kubectl) -> None:
    kubectl.apply_job(job())
    kubectl.custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "j",
        {"status": {"phase": "Running"}, "spec": {"image": "ignored"}},
        _content_type="application/merge-patch+json",
    )
    kubectl.patch_job("j", {"status": {"phase": "Failed"}, "spec": {"image": "trainer:2"}})
    body = kubectl.job("j")
    assert body["status"] == {"phase": "Running"} and body["spec"] == {"image": "trainer:2"}
    assert body["metadata"]["generation"] == 2


def test_a_failed_json_patch_test_answers_422(kubectl: Kubectl) -> None:
    kubectl.apply_job(job())
    stale = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "0"},
        {"op": "add", "path": "/spec/nodes", "value": 2},
    ]
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "j", stale)
    assert refused.value.status == 422
    assert "nodes" not in kubectl.job("j")["spec"]


def test_deleting_an_owner_collects_its_dependents_and_selectors_filter(kubectl: Kubectl) -> None:
    owner = kubectl.apply_job(job())
    reference = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": "j",
        "uid": owner["metadata"]["uid"],
    }
    for name, labels, owners in (("owned", {"job": "j"}, [reference]), ("free", {"job": "k"}, [])):
        kubectl.core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": labels, "ownerReferences": owners}}
        )
    response = kubectl.core.list_namespaced_config_map("default", label_selector="job=j")
    assert [item.metadata.name for item in response.items] == ["owned"]
    kubectl.delete_job("j")
    assert kubectl.names("configmaps") == ["free"]


def test_the_crd_validation_rules_refuse_changes_to_what_a_job_is_made_of(kubectl: Kubectl) -> None:
    manifest = job()
    manifest["spec"] = {"storage": {"output": "s3://b/runs"}}
    kubectl.apply_job(manifest)
    for change, field in (
        ({"nodes": 4}, "spec.nodes"),  # absent before, so compared with its default of 1
        ({"storage": {"output": "s3://b/other"}}, "spec.storage.output"),
        ({"storage": {"addressingStyle": "path"}}, "spec.storage.addressingStyle"),
    ):
        with pytest.raises(kubernetes.client.ApiException) as refused:
            kubectl.patch_job("j", {"spec": change})
        assert refused.value.status == 422, field
        assert f"{field}: Invalid value" in refused.value.body, refused.value.body
        assert f"{field} cannot change once the job exists" in refused.value.body
    assert kubectl.job("j")["metadata"]["generation"] == 1  # nothing was written

    # Credentials and the run policy may change, and so may a default spelled out.
    patch = {"nodes": 1, "storage": {"credentialsSecret": "rotated"}, "runPolicy": {"suspend": True}}
    kubectl.patch_job("j", {"spec": patch})
    assert kubectl.job("j")["spec"] == {
        "nodes": 1,
        "storage": {"output": "s3://b/runs", "credentialsSecret": "rotated"},
        "runPolicy": {"suspend": True},
    }
