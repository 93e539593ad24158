"""The Kubernetes API stand-in behaves as the operator needs an API server to: the fixes the design page
lists for kmock's emulator, checked over HTTP with the same client the operator uses."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from dreem_trainer.contract import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.k8s.harness import Kubectl, cluster_with_crd, job_manifest, minimal_spec
from tests.k8s.kubelet import LocalKubelet


@pytest.fixture
def kubectl(tmp_path: Path) -> Iterator[Kubectl]:
    with cluster_with_crd(tmp_path) as cluster:
        yield Kubectl(cluster.kubeconfig)


def job() -> dict[str, Any]:
    """The least job the CRD's schema takes (its required config and storage output; nodes left out)."""
    return job_manifest("j", {key: value for key, value in minimal_spec("j").items() if key != "nodes"})


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
    assert body["status"] == {"phase": "Running"} and body["spec"] == job()["spec"] | {"image": "trainer:2"}
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


def test_a_pod_with_two_mounts_at_one_path_is_refused_as_the_api_server_refuses_it(kubectl: Kubectl) -> None:
    volumes = [{"name": "cache", "emptyDir": {}}, {"name": "data", "persistentVolumeClaim": {"claimName": "d"}}]
    mounts = [{"name": "cache", "mountPath": "/var/cache/dreem"}, {"name": "data", "mountPath": "/var/cache/dreem"}]
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": mounts}], "volumes": volumes},
    }
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.core.create_namespaced_pod("default", pod)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert 'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/var/cache/dreem": must be unique' in message
    assert kubectl.names("pods") == []
    pod["spec"]["containers"][0]["volumeMounts"] = mounts[:1]  # type: ignore[index]
    kubectl.core.create_namespaced_pod("default", pod)
    assert kubectl.names("pods") == ["p"]


def read_pod(kubectl: Kubectl, name: str) -> dict[str, object] | None:
    found = [pod for pod in kubectl.pods() if pod["metadata"]["name"] == name]
    return dict(found[0]) if found else None


def test_pods_are_deleted_gracefully_only_when_a_node_holds_them_and_they_have_not_ended(kubectl: Kubectl) -> None:
    """podStrategy.CheckGracefulDelete: a pod no node holds, or one that ended, goes at once; any other is
    marked until its kubelet confirms, a pod that never started (an image it cannot pull) among them."""
    for name, node, phase in [("unbound", None, None), ("pulling", "n1", "Pending"), ("ended", "n1", "Failed")]:
        spec: dict[str, object] = {"containers": [{"name": "c", "image": "i"}]}
        if node:
            spec["nodeName"] = node
        kubectl.core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": spec})
        if phase:
            kubectl.core.patch_namespaced_pod_status(name, "default", {"status": {"phase": phase}})
        kubectl.core.delete_namespaced_pod(name, "default")
    assert read_pod(kubectl, "unbound") is None and read_pod(kubectl, "ended") is None
    pulling = read_pod(kubectl, "pulling")
    assert pulling is not None and pulling["metadata"]["deletionTimestamp"]  # type: ignore[index]
    # The kubelet's status write while it stops the pod is stored, not taken for the deletion.
    kubectl.core.patch_namespaced_pod_status("pulling", "default", {"status": {"phase": "Failed"}})
    stopped = read_pod(kubectl, "pulling")
    assert stopped is not None and stopped["status"]["phase"] == "Failed"  # type: ignore[index]
    kubectl.core.delete_namespaced_pod("pulling", "default", grace_period_seconds=0)  # the kubelet confirms
    assert read_pod(kubectl, "pulling") is None


@pytest.mark.parametrize(
    ("labels", "said"),
    [
        ({"bad key": "x"}, 'Invalid value: "bad key": name part must consist of alphanumeric characters'),
        ({"run": "-x"}, 'Invalid value: "-x": a valid label must be an empty string'),
        ({"run": "x" * 64}, "must be no more than 63 characters"),
    ],
)
def test_labels_the_api_server_refuses_answer_422_on_any_object(
    kubectl: Kubectl, labels: dict[str, str], said: str
) -> None:
    config_map = {"metadata": {"name": "c", "labels": labels}, "data": {}}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.core.create_namespaced_config_map("default", config_map)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert message.startswith('ConfigMap "c" is invalid: metadata.labels: ') and said in message, message
    kubectl.core.create_namespaced_config_map("default", {"metadata": {"name": "c", "labels": {"a.b/run": "x_1"}}})
    assert kubectl.names("configmaps") == ["c"]


def test_the_crd_validation_rules_refuse_changes_to_what_a_job_is_made_of(kubectl: Kubectl) -> None:
    manifest = job()
    manifest["spec"]["storage"] = {"output": "s3://b/runs"}
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
        "config": manifest["spec"]["config"],
        "nodes": 1,
        "storage": {"output": "s3://b/runs", "credentialsSecret": "rotated"},
        "runPolicy": {"suspend": True},
    }


def lease(name: str = "dreem-operator", holder: str = "a") -> dict[str, object]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


def conflict_of(error: kubernetes.client.ApiException) -> dict[str, object]:
    assert error.status == 409, error.body
    body: dict[str, object] = json.loads(error.body)
    return body


def test_leases_are_served_and_a_stale_update_answers_409_as_the_api_server_does(kubectl: Kubectl) -> None:
    coordination = kubernetes.client.CoordinationV1Api(kubectl.core.api_client)
    created = coordination.create_namespaced_lease("default", lease())
    read = coordination.read_namespaced_lease("dreem-operator", "default")
    assert read.spec.holder_identity == "a" and read.metadata.resource_version == created.metadata.resource_version
    read.spec.holder_identity = "b"
    updated = coordination.replace_namespaced_lease("dreem-operator", "default", read)
    assert updated.spec.holder_identity == "b"
    # `created` still carries the version read before that update.
    created.spec.holder_identity = "c"
    with pytest.raises(kubernetes.client.ApiException) as refused:
        coordination.replace_namespaced_lease("dreem-operator", "default", created)
    assert conflict_of(refused.value) == {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on leases.coordination.k8s.io "dreem-operator": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "dreem-operator", "group": "coordination.k8s.io", "kind": "leases"},
        "code": 409,
    }
    assert coordination.read_namespaced_lease("dreem-operator", "default").spec.holder_identity == "b"


def test_an_update_replaces_the_object_and_keeps_what_the_server_owns(kubectl: Kubectl) -> None:
    coordination = kubernetes.client.CoordinationV1Api(kubectl.core.api_client)
    created = coordination.create_namespaced_lease(
        "default", lease() | {"metadata": {"name": "l", "labels": {"x": "1"}}}
    )
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l", "resourceVersion": created.metadata.resource_version},
        "spec": {"holderIdentity": "b"},
    }
    replaced = coordination.replace_namespaced_lease("l", "default", body)
    assert replaced.metadata.labels is None and replaced.spec.lease_duration_seconds is None
    assert replaced.metadata.uid == created.metadata.uid
    assert replaced.metadata.creation_timestamp == created.metadata.creation_timestamp


def test_a_status_patch_carrying_a_stale_resource_version_answers_409(kubectl: Kubectl) -> None:
    version = kubectl.apply_job(job())["metadata"]["resourceVersion"]
    kubectl.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "j", {"status": {"progress": {"epoch": 1}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    stale = {"metadata": {"resourceVersion": version}, "status": {"phase": "Failed"}}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "j", stale, _content_type="application/merge-patch+json"
        )
    body = conflict_of(refused.value)
    assert body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on dreemtrainingjobs.dreem.sleap.ai "j": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert kubectl.job("j")["status"] == {"progress": {"epoch": 1}}
    current = {"metadata": {"resourceVersion": kubectl.job("j")["metadata"]["resourceVersion"]}}
    kubectl.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "j", current | {"status": {"phase": "Running"}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    assert kubectl.job("j")["status"] == {"progress": {"epoch": 1}, "phase": "Running"}
    # A patch naming no version is unconditional, as in the API server.
    kubectl.patch_job("j", {"spec": {"image": "trainer:2"}})
    assert kubectl.job("j")["spec"]["image"] == "trainer:2"


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("dreem.sleap.ai/job", ["gpu-a", "gpu-b"]),
        ("!dreem.sleap.ai/job", ["foreign"]),
        ("dreem.sleap.ai/job=a", ["gpu-a"]),
        ("dreem.sleap.ai/job==a,rank=0", ["gpu-a"]),
        ("dreem.sleap.ai/job!=a", ["foreign", "gpu-b"]),
        ("dreem.sleap.ai/job in (a, b)", ["gpu-a", "gpu-b"]),
        ("dreem.sleap.ai/job notin (a),rank", ["gpu-b"]),
        ("", ["foreign", "gpu-a", "gpu-b"]),
    ],
)
def test_label_selectors_of_every_kind_filter_lists(kubectl: Kubectl, selector: str, expected: list[str]) -> None:
    for name, labels in (
        ("gpu-a", {"dreem.sleap.ai/job": "a", "rank": "0"}),
        ("gpu-b", {"dreem.sleap.ai/job": "b", "rank": "1"}),
        ("foreign", {"app": "web"}),
    ):
        kubectl.core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})
    response = kubectl.core.list_namespaced_config_map("default", label_selector=selector)
    assert sorted(item.metadata.name for item in response.items) == expected


def test_every_write_is_recorded_with_the_token_that_made_it(tmp_path: Path) -> None:
    with cluster_with_crd(tmp_path) as cluster:
        other = cluster.kubeconfig_for("operator-b")
        Kubectl(cluster.kubeconfig).apply_job(job())
        Kubectl(other).patch_job("j", {"spec": {"image": "x"}})
        Kubectl(other).job("j")  # a read is no write
        assert [(w.who, w.verb, w.plural, w.name) for w in cluster.emulator.writes] == [
            ("emulated", "create", PLURAL, "j"),
            ("operator-b", "patch", PLURAL, "j"),
        ]


def test_the_name_rule_refuses_a_job_whose_children_could_not_be_named(kubectl: Kubectl) -> None:
    manifest = job()
    manifest["metadata"] = {"name": "a" * 57}
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.apply_job(manifest)
    assert refused.value.status == 422
    assert json.loads(refused.value.body)["message"].startswith(
        f'{KIND}.{GROUP} "{"a" * 57}" is invalid: <nil>: Invalid value: "object": metadata.name must be at most 56'
    )
    manifest["metadata"] = {"name": "a" * 56}
    kubectl.apply_job(manifest)


def watched(kubectl: Kubectl, **params: Any) -> list[tuple[str, str, str]]:
    """(type, name, resourceVersion) of every event a pod watch gets until the server ends it (timeoutSeconds)."""
    stream = kubernetes.watch.Watch().stream(
        kubectl.core.list_namespaced_pod, "default", timeout_seconds=1, _preload_content=False, **params
    )
    return [
        (event["type"], event["raw_object"]["metadata"]["name"], event["raw_object"]["metadata"]["resourceVersion"])
        for event in stream
    ]


def pod(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"containers": [{"name": "c", "image": "i"}]}}


def test_a_watch_starts_where_its_resource_version_says_and_ends_after_its_timeout(kubectl: Kubectl) -> None:
    """kopf lists, then watches from the list's version, and again from the last event's when a watch ends:
    each event once. A watch without a version starts with the objects there are."""
    first = kubectl.core.create_namespaced_pod("default", pod("a"))
    listed = kubectl.core.list_namespaced_pod("default").metadata.resource_version
    kubectl.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    kubectl.core.create_namespaced_pod("default", pod("b"))
    later = watched(kubectl, resource_version=listed)
    assert [(kind, name) for kind, name, _ in later] == [("MODIFIED", "a"), ("ADDED", "b")]
    assert watched(kubectl, resource_version=later[-1][2]) == []  # nothing since the last event
    from_before = watched(kubectl, resource_version=first.metadata.resource_version)
    assert from_before == later  # the same events at the same versions, however often asked
    assert sorted((kind, name) for kind, name, _ in watched(kubectl)) == [("ADDED", "a"), ("ADDED", "b")]


def test_a_watch_from_before_the_changes_kept_gets_410_expired(tmp_path: Path) -> None:
    with cluster_with_crd(tmp_path) as cluster:
        cluster.emulator.changes_kept = 2
        kubectl = Kubectl(cluster.kubeconfig)
        kubectl.core.create_namespaced_pod("default", pod("z"))
        before = kubectl.core.list_namespaced_pod("default").metadata.resource_version
        created = kubectl.core.create_namespaced_pod("default", pod("a")).metadata.resource_version
        for value in ("1", "2"):
            kubectl.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": value}}})
        # Two changes kept (the patches): a watch from before the creation would miss it.
        with pytest.raises(kubernetes.client.ApiException) as expired:
            watched(kubectl, resource_version=before)
        assert expired.value.status == 410 and "too old resource version" in str(expired.value.reason)
        # From the creation on, the window holds every change there was.
        assert [kind for kind, _, _ in watched(kubectl, resource_version=created)] == ["MODIFIED", "MODIFIED"]


def test_a_change_across_a_watch_selector_arrives_as_added_or_deleted(kubectl: Kubectl) -> None:
    """The watch cache converts a change that makes an object match, or stop matching, a watch's selector
    into ADDED or DELETED: an operator watching its own pods by label sees one relabelled away go."""
    kubectl.core.create_namespaced_pod("default", pod("other", app="else"))
    start = kubectl.core.list_namespaced_pod("default").metadata.resource_version
    kubectl.core.create_namespaced_pod("default", pod("p", app="dreem"))
    for app in ("else", "dreem"):
        kubectl.core.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"app": app}}})
    kubectl.core.delete_namespaced_pod("p", "default")
    events = watched(kubectl, resource_version=start, label_selector="app=dreem")
    assert [(kind, name) for kind, name, _ in events] == [
        ("ADDED", "p"),
        ("DELETED", "p"),
        ("ADDED", "p"),
        ("DELETED", "p"),
    ]
    versions = [int(version) for _, _, version in events]
    assert versions == sorted(versions) and len(set(versions)) == 4  # each at its own change's version


def test_a_dependent_made_after_its_owner_was_deleted_is_collected(kubectl: Kubectl) -> None:
    """The garbage collector deletes a dependent whose owners are all gone, however late it was made: a
    controller that creates a child of a job the user has just deleted leaves nothing behind."""
    owner = kubectl.apply_job(job())
    reference = {"apiVersion": API_VERSION, "kind": KIND, "name": "j", "uid": owner["metadata"]["uid"]}
    kubectl.delete_job("j")
    kubectl.core.create_namespaced_config_map("default", {"metadata": {"name": "late", "ownerReferences": [reference]}})
    kubectl.core.create_namespaced_config_map("default", {"metadata": {"name": "free"}})
    deadline = time.monotonic() + 10
    while kubectl.names("configmaps") != ["free"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kubectl.names("configmaps") == ["free"]


def test_a_write_that_changes_nothing_is_not_stored(kubectl: Kubectl) -> None:
    """The API server stores no write whose result equals the object: the same resourceVersion comes back,
    and no watch hears of it (kopf's status patches that change nothing wake no one)."""
    before = kubectl.apply_job(job())["metadata"]["resourceVersion"]
    kubectl.patch_job("j", {"spec": {}})
    kubectl.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "j", {"status": None}, _content_type="application/merge-patch+json"
    )
    assert kubectl.job("j")["metadata"]["resourceVersion"] == before
    kubectl.patch_job("j", {"spec": {"image": "trainer:2"}})
    after = kubectl.job("j")["metadata"]["resourceVersion"]
    assert int(after) > int(before)
    stream = kubernetes.watch.Watch().stream(
        kubectl.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        resource_version=before,
        timeout_seconds=1,
        _preload_content=False,
    )
    assert [(event["type"], event["raw_object"]["metadata"]["resourceVersion"]) for event in stream] == [
        ("MODIFIED", after)
    ]


def test_a_deleted_pod_reaches_a_terminal_phase_before_it_goes(tmp_path: Path) -> None:
    """Since Kubernetes 1.27 a kubelet writes a deleted pod's end (phase Failed, the container's exit code)
    before it removes the pod: a controller watching sees how it ended, SIGTERM's 143 here."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]

    def phase(api: Kubectl) -> str | None:
        found = [item for item in api.pods() if item["metadata"]["name"] == "p"]
        return str((found[0].get("status") or {}).get("phase")) if found else None

    with cluster_with_crd(tmp_path) as cluster:
        kubectl = Kubectl(cluster.kubeconfig)
        kubelet = LocalKubelet(cluster.kubeconfig, tmp_path / "node", sleeper, {}).start()
        try:
            start = kubectl.core.create_namespaced_pod("default", pod("p")).metadata.resource_version
            deadline = time.monotonic() + 30
            while phase(kubectl) != "Running" and time.monotonic() < deadline:
                time.sleep(0.05)
            kubectl.core.delete_namespaced_pod("p", "default")
            while phase(kubectl) is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            kubelet.stop()
        stream = kubernetes.watch.Watch().stream(
            kubectl.core.list_namespaced_pod,
            "default",
            resource_version=start,
            timeout_seconds=1,
            _preload_content=False,
        )
        events = [(event["type"], event["raw_object"].get("status") or {}) for event in stream]
    assert events[-1][0] == "DELETED"
    ended = [status for kind, status in events if kind == "MODIFIED" and status.get("phase") == "Failed"]
    assert ended, [(kind, status.get("phase")) for kind, status in events]
    (container,) = ended[0]["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 143


def test_a_custom_resource_is_pruned_to_its_schema_and_validated_against_it(kubectl: Kubectl) -> None:
    """What the API server does with a write the schema does not describe: a field it lacks is dropped, with a
    warning (kubectl, asking strict field validation, is refused instead); a field of the wrong type is
    refused with 422 in its words; a status field the schema lacks is dropped too."""
    manifest = job()
    manifest["spec"]["nodez"] = 2
    response = kubectl.custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, manifest, _preload_content=False
    )
    assert response.headers.get("Warning") == '299 - "unknown field \\"spec.nodez\\""'
    assert "nodez" not in kubectl.job("j")["spec"] and kubectl.job("j")["spec"]["config"] == manifest["spec"]["config"]

    strict = job() | {"metadata": {"name": "k"}}
    strict["spec"]["storage"]["outptu"] = "s3://lab/typo"
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, strict, field_validation="Strict"
        )
    assert refused.value.status == 400
    assert json.loads(refused.value.body)["message"] == (
        f'{KIND} in version "{VERSION}" cannot be handled as a {KIND}: strict decoding error: '
        'unknown field "spec.storage.outptu"'
    )

    with pytest.raises(kubernetes.client.ApiException) as wrong:
        kubectl.patch_job("j", {"spec": {"runPolicy": {"backoffLimit": "three"}}})
    assert wrong.value.status == 422
    assert (
        'spec.runPolicy.backoffLimit: Invalid value: "string": spec.runPolicy.backoffLimit in body must be of '
        'type integer: "string"'
    ) in json.loads(wrong.value.body)["message"]

    kubectl.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "j", {"status": {"phase": "Running", "mood": "fine"}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip
    assert kubectl.job("j")["status"] == {"phase": "Running"}


def test_a_job_stored_under_a_laxer_schema_can_still_be_written(tmp_path: Path) -> None:
    """Validation ratcheting: an update is not refused for what it leaves as it was, so the operator can write
    the status of a job created before the schema refused its spec; a new invalid value is still refused."""
    with cluster_with_crd(tmp_path) as cluster:
        kubectl = Kubectl(cluster.kubeconfig)
        stored = job()
        stored["metadata"]["namespace"] = "default"
        stored["spec"]["nodes"] = -1
        cluster.seed(f"{GROUP}/{VERSION}/{PLURAL}", [stored])
        kubectl.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "j", {"status": {"phase": "Failed"}},
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        assert kubectl.job("j")["status"] == {"phase": "Failed"}
        with pytest.raises(kubernetes.client.ApiException) as refused:
            kubectl.patch_job("j", {"spec": {"nodes": -2}})
        assert "spec.nodes: Invalid value: -2" in json.loads(refused.value.body)["message"]


def test_a_watch_that_falls_behind_the_window_ends_rather_than_skip(tmp_path: Path) -> None:
    """More changes than the window holds arrive before a watch can send them: the API server closes such a
    watcher, and the client's next watch from where it was is told 410 and lists afresh. Events are never
    skipped in silence."""
    with cluster_with_crd(tmp_path) as cluster:
        cluster.emulator.changes_kept = 5
        kubectl = Kubectl(cluster.kubeconfig)
        kubectl.core.create_namespaced_pod("default", pod("first"))
        start = kubectl.core.list_namespaced_pod("default").metadata.resource_version
        outcome: list[object] = []

        def watch() -> None:
            try:
                outcome.append(watched(kubectl, resource_version=start))
            except kubernetes.client.ApiException as error:
                outcome.append(error.status)

        watcher = threading.Thread(target=watch)
        watcher.start()
        deadline = time.monotonic() + 10
        while cluster.emulator.served["WATCH pods"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the watch waits for changes
        burst = [pod(f"burst-{n}") for n in range(20)]
        for made in burst:
            made["metadata"]["namespace"] = "default"
        cluster.seed("v1/pods", burst)  # twenty changes at once, four times the window
        watcher.join(30)
        assert outcome in ([[]], [410])  # nothing, or told at once: not the window's last five alone
        with pytest.raises(kubernetes.client.ApiException) as expired:
            watched(kubectl, resource_version=start)
        assert expired.value.status == 410


def test_a_watch_ends_after_its_timeout_and_zero_means_the_servers_choice(kubectl: Kubectl) -> None:
    kubectl.core.create_namespaced_pod("default", pod("a"))
    start = kubectl.core.list_namespaced_pod("default").metadata.resource_version
    response = kubectl.core.list_namespaced_pod(
        "default", watch=True, resource_version=start, timeout_seconds=0, _preload_content=False
    )
    kubectl.core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    line = json.loads(response.readline())  # the stream is still open after the change: 0 set no deadline
    assert (line["type"], line["object"]["metadata"]["name"]) == ("MODIFIED", "a")
    response.release_conn()
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubectl.core.list_namespaced_pod("default", watch=True, timeout_seconds="soon")
    assert refused.value.status == 400


def test_a_null_where_the_schema_allows_none_is_dropped(kubectl: Kubectl) -> None:
    """The API server drops a null from a field that is not nullable before it validates (a YAML key left
    empty, `nodes:`), rather than refuse the job; a nullable field keeps its null."""
    manifest = job()
    manifest["spec"]["nodes"] = None
    manifest["spec"]["image"] = None
    kubectl.apply_job(manifest)
    spec = kubectl.job("j")["spec"]
    assert "nodes" not in spec and spec["image"] is None
