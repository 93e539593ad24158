"""Gang scheduling and queues: a PodGroup per attempt for Volcano or scheduler-plugins with Kubeflow's
schedulingPolicy mapped onto each project's fields, the pods' schedulerName and group label or annotation,
Kueue's plain-pod group metadata, and the pod template's own labels and annotations. Every object passes the
official Kubernetes schemas (strict) or the vendored CRD of the project that serves it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import kubernetes_validate
import pytest

from dreem_operator.api import Phase, quantity_value
from dreem_operator.children import OperatorSettings, times
from dreem_operator.reconcile import ObservedPodGroup
from tests.k8s.admission import DNS_SUBDOMAIN, custom_resource_errors, label_problems
from tests.unit.operator.cases import pod, run, status

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
POLICY = {
    "minAvailable": 2,
    "queue": "lab-gpus",
    "priorityClass": "high",
    "scheduleTimeoutSeconds": 600,
}
TEMPLATE = {
    "labels": {"team": "flies", "dreem.sleap.ai/job": "hijack"},
    "annotations": {"owner": "ada@lab.org"},
}


def settings(scheduler: str, **more: Any) -> OperatorSettings:
    return OperatorSettings(gang_scheduler=scheduler, **more)  # type: ignore[arg-type]


def created(scheduler: str, policy: dict[str, Any] | None = None, **more: Any) -> dict[str, list[dict[str, Any]]]:
    plan = run(
        [],
        settings=settings(scheduler, **more),
        runPolicy={"schedulingPolicy": policy if policy is not None else POLICY},
        podTemplate=TEMPLATE,
        resources={"requests": {"cpu": "8", "memory": "32Gi"}},
    )
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in plan.create:
        by_kind.setdefault(obj["kind"], []).append(obj)
    return by_kind


def test_volcano_gets_a_pod_group_with_queue_priority_and_the_gangs_resources() -> None:
    objects = created("volcano")
    (group,) = objects["PodGroup"]
    assert group["apiVersion"] == "scheduling.volcano.sh/v1beta1" and group["metadata"]["name"] == "flies-0"
    assert group["spec"] == {
        "minMember": 2,
        "minResources": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": 8},
        "queue": "lab-gpus",
        "priorityClassName": "high",
    }
    assert group["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    for manifest in objects["Pod"]:
        assert manifest["spec"]["schedulerName"] == "volcano"
        assert manifest["metadata"]["annotations"]["scheduling.k8s.io/group-name"] == "flies-0"
        assert not any(key.startswith("kueue.x-k8s.io/") for key in manifest["metadata"]["labels"])


def test_a_fractional_cpu_written_as_a_number_is_the_gangs_too() -> None:
    # A chart's trainer.resources or a job's spec.resources of `cpu: 1.5` reaches the operator as a float; the
    # job used to get no PodGroup, pods or status at all (every reconcile raised).
    plan = run([], settings=settings("volcano"), resources={"requests": {"cpu": 1.5, "memory": "8Gi"}})
    (group,) = [obj for obj in plan.create if obj["kind"] == "PodGroup"]
    assert group["spec"]["minResources"] == {"cpu": "3", "memory": "16Gi", "nvidia.com/gpu": 8}
    assert [
        obj["spec"]["containers"][0]["resources"]["requests"]["cpu"] for obj in plan.create if obj["kind"] == "Pod"
    ] == [1.5, 1.5]


def test_scheduler_plugins_gets_a_pod_group_with_its_timeout_and_labelled_pods() -> None:
    objects = created("scheduler-plugins", POLICY | {"minResources": {"nvidia.com/gpu": 8}})
    (group,) = objects["PodGroup"]
    assert group["apiVersion"] == "scheduling.x-k8s.io/v1alpha1"
    assert group["spec"] == {"minMember": 2, "minResources": {"nvidia.com/gpu": 8}, "scheduleTimeoutSeconds": 600}
    for manifest in objects["Pod"]:
        assert manifest["spec"]["schedulerName"] == "scheduler-plugins-scheduler"
        assert manifest["metadata"]["labels"]["scheduling.x-k8s.io/pod-group"] == "flies-0"
    renamed = created("scheduler-plugins", scheduler_name="default-scheduler")
    assert {p["spec"]["schedulerName"] for p in renamed["Pod"]} == {"default-scheduler"}


def test_without_a_gang_scheduler_the_pods_form_one_kueue_group() -> None:
    objects = created("none")
    assert "PodGroup" not in objects
    for manifest in objects["Pod"]:
        meta = manifest["metadata"]
        assert "schedulerName" not in manifest["spec"]
        assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "lab-gpus"
        assert meta["labels"]["kueue.x-k8s.io/pod-group-name"] == "flies-0"
        assert meta["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "2"
        assert meta["annotations"]["kueue.x-k8s.io/retriable-in-group"] == "false"
        assert DNS_SUBDOMAIN.match(meta["labels"]["kueue.x-k8s.io/pod-group-name"])
    unqueued = created("none", {})
    assert all("kueue.x-k8s.io/queue-name" not in p["metadata"]["labels"] for p in unqueued["Pod"])


def test_the_pod_templates_labels_and_annotations_reach_the_pods_and_ours_win() -> None:
    for manifest in created("none")["Pod"]:
        meta = manifest["metadata"]
        assert meta["labels"]["team"] == "flies" and meta["labels"]["dreem.sleap.ai/job"] == "flies"
        assert meta["annotations"]["owner"] == "ada@lab.org"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scheduler", ["none", "volcano", "scheduler-plugins"])
def test_every_object_passes_its_schema(scheduler: str, version: str) -> None:
    objects = created(scheduler)
    for obj in [obj for kind, found in objects.items() if kind != "PodGroup" for obj in found]:
        kubernetes_validate.validate(obj, version, strict=True)
        assert label_problems(obj["metadata"]["labels"]) == []
    for group in objects.get("PodGroup", []):
        assert custom_resource_errors(group) == []


def test_the_vendored_schemas_refuse_what_they_must() -> None:
    (volcano,) = created("volcano")["PodGroup"]
    volcano["spec"]["queue"] = "Team_Q"
    volcano["spec"]["minAvailable"] = 2  # Kubeflow's name is not the PodGroup's
    assert len(custom_resource_errors(volcano)) == 2
    (coscheduling,) = created("scheduler-plugins")["PodGroup"]
    coscheduling["spec"]["minMember"] = 0
    assert custom_resource_errors(coscheduling)


def test_a_pod_group_lives_as_long_as_its_gang() -> None:
    volcano = settings("volcano")
    groups = [ObservedPodGroup("flies-0", 0), ObservedPodGroup("flies-1", 1)]
    restarting = status(phase=Phase.RESTARTING, restarts=1, attempt=1, startTime="2026-11-25T11:00:00Z")
    assert run([], restarting, settings=volcano, pod_groups=groups).delete_pod_groups == ["flies-0"]
    restarted = run([pod(0, "Failed", 1, exit_code=1)], restarting, settings=volcano, pod_groups=groups[1:])
    assert restarted.status.attempt == 2 and restarted.delete_pod_groups == ["flies-1"]
    done = status(phase=Phase.SUCCEEDED, restarts=1, attempt=1, completionTime="2026-11-25T11:00:00Z")
    assert run([], done, settings=volcano, pod_groups=groups[1:]).delete_pod_groups == ["flies-1"]
    suspended = run(
        [pod(0, "Running", 1)], restarting, settings=volcano, pod_groups=groups[1:], runPolicy={"suspend": True}
    )
    assert suspended.delete_pod_groups == ["flies-1"]


@pytest.mark.parametrize(
    ("quantity", "factor", "product"),
    [
        (4, 2, 8),
        ("8", 2, "16"),
        ("500m", 3, "1500m"),
        ("32Gi", 2, "64Gi"),
        ("1.5", 2, "3"),
        ("1e3", 2, "2e3"),
        (0.5, 3, "1.5"),  # YAML's `cpu: 0.5` is a number
    ],
)
def test_quantities_multiply_in_their_own_unit(quantity: int | float | str, factor: int, product: int | str) -> None:
    assert times(quantity, factor) == product


def test_a_min_resources_value_that_is_no_quantity_fails_the_job_naming_it() -> None:
    plan = run([], runPolicy={"schedulingPolicy": {"minResources": {"nvidia.com/gpu": "eight"}}})
    assert plan.status.phase == Phase.FAILED
    assert plan.status.message is not None and "minResources" in plan.status.message and "eight" in plan.status.message


@pytest.mark.parametrize(
    ("resources", "named"),
    [
        ({"limits": {"memory": "lots"}}, "'lots' is not a Kubernetes quantity"),
        ({"requests": {"cpu": "-2"}}, "requests.cpu"),
        ({"requests": {"memory": "64Gi"}, "limits": {"memory": "32Gi"}}, "more than its limit '32Gi'"),
        ({"requests": {"cpu": 9}, "limits": {"cpu": "8000m"}}, "more than its limit '8000m'"),
        ({"limit": {"cpu": 8}}, "limit"),
        ({"limits": ["cpu", 8]}, "limits"),
        ({"limits": {"memory": "1e999999999"}}, "beyond any resource's size"),
    ],
)
def test_resources_the_api_server_would_refuse_fail_the_job_naming_them(resources: Any, named: str) -> None:
    """A pod with such resources is refused (an unparsable quantity with 400, a request above its limit with
    422), and a 400 only ever made the job wait: the spec is refused first, naming the key."""
    plan = run([], resources=resources)
    assert plan.status.phase == Phase.FAILED
    assert plan.status.message is not None and "resources" in plan.status.message and named in plan.status.message


@pytest.mark.parametrize(
    "resources",
    [
        {"limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": 4}, "requests": {"cpu": "7500m", "memory": "32Gi"}},
        {"requests": {"cpu": 0.5, "memory": "1e9"}, "limits": {"memory": "1Gi"}},
        {"limits": None, "requests": {"cpu": 1}},  # `limits:` left empty in YAML
    ],
)
def test_resources_the_api_server_takes_pass(resources: Any) -> None:
    assert run([], resources=resources).status.phase != Phase.FAILED


@pytest.mark.parametrize(
    ("quantity", "amount"),
    [
        ("32Gi", 32 * 2**30),
        ("1Ei", 2**60),  # exbi, not an exponent
        ("2E", 2 * 10**18),  # exa
        ("1E2", 100),  # an exponent
        ("500m", Decimal("0.5")),
        (0.5, Decimal("0.5")),
        ("1.5k", 1500),
    ],
)
def test_a_quantity_stands_for_its_amount(quantity: int | float | str, amount: int | Decimal) -> None:
    assert quantity_value(quantity) == amount
