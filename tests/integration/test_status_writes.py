"""The operator's status writes against rank 0's progress reports and against leadership, over HTTP on the
API emulator: a write decided on a stale read gets a 409 and is decided again from a fresh read, so neither
side overwrites the other; and a replica that does not lead writes nothing at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from dreem_operator.api import KubernetesObject, Phase
from dreem_operator.children import OperatorSettings
from dreem_operator.controller import CONFLICT_RETRIES, Reconciler
from dreem_operator.kube import ClusterApi, NotLeading
from dreem_operator.metrics import OperatorMetrics
from dreem_trainer.contract import GROUP, PLURAL, STATUS_PATCH, VERSION
from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, job_manifest, minimal_spec

pytestmark = pytest.mark.slow

SETTINGS = OperatorSettings(trainer_image="trainer:test")
REPORT = "import json, sys; from dreem_trainer.cluster.job_status import JobStatus; "
REPORT += "sys.exit(0 if JobStatus(sys.argv[1], sys.argv[2]).report(json.loads(sys.argv[3])) else 1)"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with cluster_with_crd(tmp_path) as served:
        yield served


Reporter = Callable[[EmulatedCluster, str, dict[str, Any]], None]


def rank_zero_reports(cluster: EmulatedCluster, name: str, progress: dict[str, Any]) -> None:
    """The trainer's own progress write (dreem_trainer.cluster.job_status), from its own process."""
    env = os.environ | {"KUBECONFIG": str(cluster.kubeconfig)}
    subprocess.run([sys.executable, "-c", REPORT, "default", name, json.dumps(progress)], env=env, check=True)


def quick_report(cluster: EmulatedCluster, name: str, progress: dict[str, Any]) -> None:
    """The same merge patch of status.progress, from the test process (no interpreter start per report)."""
    Kubectl(cluster.kubeconfig).custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, name, {"status": {"progress": progress}}, _content_type=STATUS_PATCH
    )


class ReportsBetweenReadAndWrite(ClusterApi):
    """The race the resourceVersion guards: rank 0 reports after the operator read the job, before it writes."""

    def __init__(self, cluster: EmulatedCluster, reports: list[dict[str, Any]], report: Reporter) -> None:
        super().__init__(kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig)))
        self.cluster, self.reports, self.report = cluster, reports, report

    def read_job(self, namespace: str, name: str) -> KubernetesObject | None:
        body = super().read_job(namespace, name)
        if self.reports:
            self.report(self.cluster, name, self.reports.pop(0))
        return body


def conflicts(metrics: OperatorMetrics) -> float | None:
    value: float | None = metrics.registry.get_sample_value("dreem_status_conflicts_total")
    return value


def test_a_decision_on_a_stale_read_is_refused_and_made_again_keeping_the_progress(cluster: EmulatedCluster) -> None:
    kubectl = Kubectl(cluster.kubeconfig)
    kubectl.apply_job(job_manifest("flies", minimal_spec("flies")))
    metrics = OperatorMetrics()
    api = ReportsBetweenReadAndWrite(cluster, [{"epoch": 1, "step": 10}, {"epoch": 2, "step": 20}], rank_zero_reports)
    Reconciler(api, SETTINGS, metrics).reconcile("default", "flies")
    status = kubectl.job("flies")["status"]
    # Two reports raced two decisions: both decisions were refused and made again, and the third landed.
    assert conflicts(metrics) == 2
    assert status["phase"] == Phase.PENDING and status["progress"] == {"epoch": 2, "step": 20}
    assert kubectl.names("pods") == ["flies-0-0", "flies-0-1"]
    status_writes = [w for w in cluster.emulator.writes if w.subresource == "status" and w.who == "emulated"]
    assert len(status_writes) == 3  # two progress reports and the operator's one write


def test_a_job_that_keeps_changing_is_left_to_its_next_trigger_with_nothing_written(cluster: EmulatedCluster) -> None:
    kubectl = Kubectl(cluster.kubeconfig)
    kubectl.apply_job(job_manifest("flies", minimal_spec("flies")))
    metrics = OperatorMetrics()
    reports = [{"step": step} for step in range(CONFLICT_RETRIES + 1)]
    reconciler = Reconciler(ReportsBetweenReadAndWrite(cluster, reports, quick_report), SETTINGS, metrics)
    reconciler.reconcile("default", "flies")
    assert conflicts(metrics) == CONFLICT_RETRIES + 1
    assert "phase" not in kubectl.job("flies")["status"] and kubectl.names("pods") == []
    reconciler.reconcile("default", "flies")  # the next trigger, with no report racing it
    assert kubectl.job("flies")["status"]["phase"] == Phase.PENDING


def test_a_replica_that_does_not_lead_writes_nothing(cluster: EmulatedCluster) -> None:
    kubectl = Kubectl(cluster.kubeconfig)
    kubectl.apply_job(job_manifest("flies", minimal_spec("flies")))
    before = len(cluster.emulator.writes)
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    leading = [False]
    api = ClusterApi(client, may_write=lambda: leading[0])
    reconciler = Reconciler(api, SETTINGS, OperatorMetrics(), leading=lambda: leading[0])
    reconciler.reconcile("default", "flies")
    assert reconciler.known_jobs() == [("default", "flies")]  # noted, for when it leads
    with pytest.raises(NotLeading):
        api.create({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}})
    with pytest.raises(NotLeading):
        api.patch_status("default", "flies", {"phase": "Failed"}, "1")
    assert cluster.emulator.writes[before:] == []
    leading[0] = True
    reconciler.reconcile("default", "flies")
    assert kubectl.job("flies")["status"]["phase"] == Phase.PENDING


def reconciled_with_pod_template(cluster: EmulatedCluster, pod_template: dict[str, Any]) -> dict[str, Any]:
    """The status of a job "flies" with this podTemplate after one reconcile."""
    kubectl = Kubectl(cluster.kubeconfig)
    kubectl.apply_job(job_manifest("flies", minimal_spec("flies") | {"podTemplate": pod_template}))
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    Reconciler(ClusterApi(client), SETTINGS, OperatorMetrics()).reconcile("default", "flies")
    return dict(kubectl.job("flies")["status"])


def test_a_pod_the_api_server_refuses_fails_the_job_with_its_words(cluster: EmulatedCluster) -> None:
    # The podTemplate mounts a volume it never declares: every pod is invalid, which only the API server sees.
    status = reconciled_with_pod_template(cluster, {"volumeMounts": [{"name": "data", "mountPath": "/data"}]})
    kubectl = Kubectl(cluster.kubeconfig)
    assert status["phase"] == Phase.FAILED and kubectl.names("pods") == []
    assert 'pod flies-0-0: Pod "flies-0-0" is invalid' in status["message"]
    assert 'spec.containers[0].volumeMounts[4].name: Not found: "data"' in status["message"]
    events = [event for event in kubectl.events() if event["reason"] == "FailedCreate"]
    assert events and events[0]["type"] == "Warning"


def test_a_pod_label_the_api_server_refuses_fails_the_job_with_its_words(cluster: EmulatedCluster) -> None:
    # The schema takes any string as a podTemplate label value; the API server refuses this one on the pods.
    status = reconciled_with_pod_template(cluster, {"labels": {"experiment": "flies, round 2"}})
    assert status["phase"] == Phase.FAILED and Kubectl(cluster.kubeconfig).names("pods") == []
    assert 'Pod "flies-0-0" is invalid: metadata.labels: Invalid value: "flies, round 2"' in status["message"]
