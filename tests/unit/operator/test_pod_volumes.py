"""The pod template's volumes beside the trainer's own: a PVC mounted at the cache (the recipe docs/cluster.md
gives) or at the scratch folder replaces the operator's empty volume there, and what would make every pod
invalid (a second mount at the config or shared memory, a volume named like one of the operator's) is refused
with the spec, naming the field."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dreem_operator.api import Phase, Reason
from dreem_operator.children import TRAINER_UID
from dreem_operator.names import CACHE_MOUNT
from tests.k8s.admission import pod_spec_problems, restricted_violations
from tests.unit.operator.cases import SETTINGS, run

PVC = {"name": "cache", "persistentVolumeClaim": {"claimName": "flies-cache"}}


def pods_with(template: dict[str, Any]) -> list[dict[str, Any]]:
    plan = run([], podTemplate=template)
    assert plan.status.phase == Phase.PENDING, plan.status.message
    return [obj for obj in plan.create if obj["kind"] == "Pod"]


def test_a_pvc_at_the_cache_replaces_the_operators_empty_volume() -> None:
    for name in ("cache", "flies-cache"):  # under the operator's volume name or another
        template = {"volumes": [PVC | {"name": name}], "volumeMounts": [{"name": name, "mountPath": CACHE_MOUNT}]}
        for manifest in pods_with(template):
            assert pod_spec_problems(manifest["spec"]) == []
            (container,) = manifest["spec"]["containers"]
            at_cache = [mount for mount in container["volumeMounts"] if mount["mountPath"] == CACHE_MOUNT]
            assert at_cache == [{"name": name, "mountPath": CACHE_MOUNT}]
            volumes = {volume["name"]: volume for volume in manifest["spec"]["volumes"]}
            assert volumes[name]["persistentVolumeClaim"] == {"claimName": "flies-cache"}
            assert {"config", "scratch", "shm"} <= set(volumes)  # the others stay


def test_extra_volumes_elsewhere_keep_the_operators() -> None:
    template = {"volumes": [PVC | {"name": "data"}], "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    for manifest in pods_with(template):
        assert pod_spec_problems(manifest["spec"]) == []
        assert {v["name"] for v in manifest["spec"]["volumes"]} == {"config", "cache", "scratch", "shm", "data"}


def test_what_would_make_every_pod_invalid_fails_the_spec_naming_the_field() -> None:
    for template, named in (
        ({"volumes": [PVC | {"name": "shm"}], "volumeMounts": [{"name": "shm", "mountPath": "/data"}]}, "volumes[0]"),
        ({"volumes": [PVC], "volumeMounts": [{"name": "cache", "mountPath": "/etc/dreem"}]}, "volumeMounts[0]"),
    ):
        plan = run([], podTemplate=template)
        assert plan.status.phase == Phase.FAILED and plan.create == []
        assert plan.events[0].reason == Reason.INVALID_SPEC
        assert "spec.podTemplate" in (plan.status.message or "") and named in (plan.status.message or "")


def test_gpus_asked_for_outside_gpus_per_node_fail_the_spec_rather_than_train_on_cpu() -> None:
    config = {"model": {"d_model": 64}, "dataset": {"train_dataset": {"dir": {"path": "s3://lab/flies"}}}}
    for changes, named in (
        ({"config": config | {"trainer": {"accelerator": "gpu", "devices": 4}}}, "config.trainer.accelerator is gpu"),
        ({"resources": {"limits": {"nvidia.com/gpu": 2}}}, "resources.limits asks for nvidia.com/gpu: 2"),
    ):
        plan = run([], gpusPerNode=0, **changes)
        assert plan.status.phase == Phase.FAILED and plan.create == []
        assert plan.events[0].reason == Reason.INVALID_SPEC
        message = plan.status.message or ""
        assert named in message and "gpusPerNode is 0" in message
    # With gpusPerNode, the job's layout wins over a DREEM config written for one machine, as before.
    written_for_a_laptop = config | {"trainer": {"accelerator": "cpu", "devices": 1}}
    plan = run([], gpusPerNode=2, config=written_for_a_laptop)
    assert plan.status.phase != Phase.FAILED and any(obj["kind"] == "Pod" for obj in plan.create)


def test_training_pods_leave_the_user_to_the_platform_when_told_and_stay_restricted() -> None:
    """OpenShift's restricted SCC assigns each namespace's UIDs and refuses a pod naming another."""
    for fixed in (True, False):
        plan = run([], settings=replace(SETTINGS, trainer_fixed_user=fixed))
        pods = [obj for obj in plan.create if obj["kind"] == "Pod"]
        assert pods
        for pod in pods:
            context = pod["spec"]["securityContext"]
            named = {key: context.get(key) for key in ("runAsUser", "runAsGroup", "fsGroup")}
            assert named == dict.fromkeys(named, TRAINER_UID if fixed else None)
            assert context["runAsNonRoot"] is True and restricted_violations(pod["spec"]) == []
