"""`kubectl apply -f job.yaml` to a trained model in S3, on one machine: the API emulator, the operator in its
own process, a test kubelet running each pod as a local `dreem train`, two ranks over gloo, and moto S3."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch

from dreem_operator.api import Phase, Reason
from tests.conftest import S3_ENV, dreem_executable, free_port
from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, condition, job_manifest, phase_is
from tests.k8s.kubelet import LocalKubelet
from tests.k8s.operator_process import OperatorProcess
from tests.s3_helpers import bucket, keys
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow

SECRET = "s3-credentials"


@dataclass
class Lab:
    cluster: EmulatedCluster
    kubectl: Kubectl
    operator: OperatorProcess
    kubelet: LocalKubelet
    endpoint: str
    workdir: Path


@pytest.fixture
def lab(s3_endpoint: str, tmp_path: Path) -> Iterator[Lab]:
    with cluster_with_crd(tmp_path) as cluster:
        kubectl = Kubectl(cluster.kubeconfig)
        kubectl.create_secret(SECRET, {key: S3_ENV[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
        operator = OperatorProcess(
            cluster.kubeconfig, tmp_path / "operator.log", master_port=str(free_port()), trainer_image="dreem:test"
        ).start()
        # What the pods find on a node: the cluster's API (a kubeconfig stands in for the mounted token).
        node_env = {
            "KUBECONFIG": str(cluster.kubeconfig),
            "AWS_DEFAULT_REGION": "us-east-1",
            "DREEM_PROGRESS_SECONDS": "0.2",
            "OMP_NUM_THREADS": "1",
        }
        kubelet = LocalKubelet(cluster.kubeconfig, tmp_path / "node", [dreem_executable()], node_env).start()
        try:
            yield Lab(cluster, kubectl, operator, kubelet, s3_endpoint, tmp_path)
        finally:
            kubelet.stop()
            operator.stop()


def training_job(lab: Lab, name: str, epochs: int, chunks: int = 4) -> tuple[dict[str, Any], str]:
    data, out = bucket(lab.endpoint, with_flies=True), bucket(lab.endpoint)
    config = tiny_raw(lab.workdir, trainer={"max_epochs": epochs})
    del config["checkpointing"]["dirpath"], config["logging"]["save_dir"]  # the operator places them
    for split in ("train_dataset", "val_dataset"):
        config["dataset"][split]["dir"]["path"] = f"s3://{data}/flies"
        config["dataset"][split]["n_chunks"] = chunks
    manifest = job_manifest(
        name,
        {
            "config": config,
            "nodes": 2,
            "storage": {
                "endpoint": lab.endpoint,
                "addressingStyle": "path",
                "credentialsSecret": SECRET,
                "output": f"s3://{out}/runs/{name}",
            },
            "runPolicy": {"backoffLimit": 2},
        },
    )
    return manifest, out


def load_checkpoint(endpoint: str, out: str, key: str, workdir: Path) -> dict[str, Any]:
    local = workdir / "downloaded.ckpt"
    boto3.client("s3", endpoint_url=endpoint).download_file(out, key, str(local))
    checkpoint: dict[str, Any] = torch.load(local, map_location="cpu", weights_only=False)
    return checkpoint


def true_conditions(job: dict[str, Any]) -> list[str]:
    return [condition["type"] for condition in job["status"]["conditions"] if condition["status"] == "True"]


def test_two_node_job_trains_to_succeeded_with_checkpoint_and_progress(lab: Lab) -> None:
    manifest, out = training_job(lab, "flies", epochs=2)
    lab.kubectl.apply_job(manifest)
    job = lab.kubectl.wait_for("flies", phase_is(Phase.SUCCEEDED, Phase.FAILED), timeout=300, what="a finished phase")
    status = job["status"]
    assert status["phase"] == Phase.SUCCEEDED, (status, lab.kubelet.log_of("flies-0-1")[-3000:])
    assert true_conditions(job) == ["Created", "Succeeded"]
    assert condition(job, "Running")["reason"] == Reason.TRAINING_FINISHED
    assert status["restarts"] == 0 and status["observedGeneration"] == 1
    # GitOps-safe: the operator never touched the job's spec or metadata (no finalizers, no annotations).
    assert job["metadata"]["generation"] == 1 and job["spec"] == manifest["spec"]
    assert "finalizers" not in job["metadata"] and "annotations" not in job["metadata"]
    assert status["startTime"] <= status["completionTime"]

    stored = keys(lab.endpoint, out, "runs/flies/")
    assert "runs/flies/models/last.ckpt" in stored and "runs/flies/models/config.yaml" in stored
    checkpoint = load_checkpoint(lab.endpoint, out, "runs/flies/models/last.ckpt", lab.workdir)
    # Four clips over two ranks: two steps per rank per epoch, two epochs.
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 4

    progress = status["progress"]
    assert progress["epoch"] == 2 and progress["step"] == 4
    assert progress["lastCheckpoint"] == f"s3://{out}/runs/flies/models/last.ckpt"
    assert progress["bestCheckpoint"].startswith(f"s3://{out}/runs/flies/models/epoch=")
    assert progress["bestCheckpoint"].removeprefix(f"s3://{out}/") in stored
    assert {"train_loss_epoch", "val_loss"} <= set(progress["metrics"])

    reasons = [event["reason"] for event in lab.kubectl.events() if event["involvedObject"]["name"] == "flies"]
    assert reasons == [Reason.GANG_PENDING, Reason.GANG_RUNNING, Reason.TRAINING_FINISHED]
    # cleanPodPolicy Running (the default) keeps finished pods for their logs.
    assert lab.kubectl.names("pods") == ["flies-0-0", "flies-0-1"]
    metrics = lab.operator.metrics()
    assert re.search(r'^dreem_jobs\{phase="Succeeded"\} 1\.0$', metrics, re.MULTILINE), metrics
    assert re.search(r"^dreem_reconcile_duration_seconds_count [1-9]", metrics, re.MULTILINE)

    lab.kubectl.delete_job("flies")
    assert lab.kubectl.names("configmaps") == lab.kubectl.names("services") == []
    # Pods go once their kubelet has stopped them (graceful deletion).
    deadline = time.monotonic() + 30
    while lab.kubectl.names("pods") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.kubectl.names("pods") == []
    assert lab.kubectl.names("serviceaccounts") == []


def test_a_killed_rank_restarts_the_gang_from_the_last_checkpoint(lab: Lab) -> None:
    manifest, out = training_job(lab, "flies", epochs=8, chunks=8)
    lab.kubectl.apply_job(manifest)

    def mid_epoch_three(job: dict[str, Any]) -> bool:
        progress = (job.get("status") or {}).get("progress") or {}
        # Eight clips over two ranks: four steps an epoch. A step count off that grid is mid-epoch.
        return int(progress.get("epoch", 0)) >= 2 and int(progress.get("step", 0)) % 4 != 0

    lab.kubectl.wait_for("flies", mid_epoch_three, timeout=240, what="a report in the middle of epoch 3")
    lab.kubelet.kill("flies-0-1")
    restarting = lab.kubectl.wait_for("flies", phase_is(Phase.RESTARTING), timeout=60, what="Restarting")
    assert restarting["status"]["restarts"] == 1
    # The killed rank, as a rule; its partner, when gloo's lost connection ended it before the operator looked.
    assert re.search(r"flies-0-1 failed \(exit code 137\)|flies-0-0 failed", restarting["status"]["message"])
    job = lab.kubectl.wait_for("flies", phase_is(Phase.SUCCEEDED, Phase.FAILED), timeout=300, what="a finished phase")
    assert job["status"]["phase"] == Phase.SUCCEEDED, job["status"]
    assert job["status"]["restarts"] == 1 and job["status"]["attempt"] == 1
    assert true_conditions(job) == ["Created", "Succeeded"]
    reasons = [event["reason"] for event in lab.kubectl.events() if event["involvedObject"]["name"] == "flies"]
    assert reasons == [
        Reason.GANG_PENDING,
        Reason.GANG_RUNNING,
        Reason.GANG_RESTART,
        Reason.GANG_RUNNING,
        Reason.TRAINING_FINISHED,
    ]

    resumed = lab.kubelet.log_of("flies-1-0")
    assert f"resuming from s3://{out}/runs/flies/models/" in resumed, resumed[-3000:]
    # The second attempt trains only the epochs the first did not finish.
    first_epoch = int(re.findall(r"^epoch (\d+)/8:", resumed, re.MULTILINE)[0])
    assert first_epoch >= 3, resumed[-3000:]
    checkpoint = load_checkpoint(lab.endpoint, out, "runs/flies/models/last.ckpt", lab.workdir)
    assert checkpoint["epoch"] == 7 and checkpoint["global_step"] == 8 * 4
    assert job["status"]["progress"]["epoch"] == 8


def test_an_operator_killed_mid_reconcile_leaves_no_duplicates_or_orphans(lab: Lab) -> None:
    manifest, out = training_job(lab, "flies", epochs=3)
    lab.kubectl.apply_job(manifest)
    deadline = time.monotonic() + 60
    while not lab.kubectl.pods():  # kill the operator as soon as its first pod lands, mid-reconcile
        assert time.monotonic() < deadline, "no pod was created"
        time.sleep(0.001)  # the emulator answering the polls shares this process: leave it the GIL
    lab.operator.kill()
    lab.operator.start()
    job = lab.kubectl.wait_for("flies", phase_is(Phase.SUCCEEDED, Phase.FAILED), timeout=300, what="a finished phase")
    assert job["status"]["phase"] == Phase.SUCCEEDED and job["status"]["restarts"] == 0, job["status"]
    # Exactly one pod per rank was ever created, and every object the job owns points at it.
    assert sorted(entry.split("/")[1] for entry in lab.kubelet.started) == ["flies-0-0", "flies-0-1"]
    uid = job["metadata"]["uid"]
    for pod in lab.kubectl.pods():
        assert [ref["uid"] for ref in pod["metadata"]["ownerReferences"]] == [uid]
    assert job["status"]["progress"]["epoch"] == 3
    assert "runs/flies/models/last.ckpt" in keys(lab.endpoint, out, "runs/flies/")


def test_suspend_deletes_the_pods_keeps_progress_and_resumes(lab: Lab) -> None:
    manifest, out = training_job(lab, "flies", epochs=6, chunks=8)
    lab.kubectl.apply_job(manifest)
    lab.kubectl.wait_for(
        "flies",
        lambda job: ((job.get("status") or {}).get("progress") or {}).get("epoch", 0) >= 1,
        timeout=240,
        what="an epoch reported",
    )
    lab.kubectl.patch_job("flies", {"spec": {"runPolicy": {"suspend": True}}})
    suspended = lab.kubectl.wait_for("flies", phase_is(Phase.SUSPENDED), timeout=60, what="Suspended")
    assert suspended["status"]["progress"]["epoch"] >= 1
    lab.kubectl.wait_for("flies", lambda _: not lab.kubectl.pods(), timeout=30, what="no pods")
    lab.kubectl.patch_job("flies", {"spec": {"runPolicy": {"suspend": False}}})
    job = lab.kubectl.wait_for("flies", phase_is(Phase.SUCCEEDED, Phase.FAILED), timeout=300, what="a finished phase")
    assert job["status"]["phase"] == Phase.SUCCEEDED, job["status"]
    assert condition(job, "Suspended")["reason"] == Reason.RESUMED
    # The resumed gang is a new attempt, which claimed the output and resumed from the suspended one's upload.
    assert job["status"]["attempt"] == 1
    assert f"resuming from s3://{out}/runs/flies/models/" in lab.kubelet.log_of("flies-1-0")
