"""The kopf handlers. Each only names the job that may need work and hands it to the Reconciler.

No handler stores state on the job (no finalizers, no kopf annotations): the operator writes only the
status and its own children, so GitOps tools never see the operator edit a manifest, and a job deleted
while the operator is down goes at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import kopf
import kubernetes
import prometheus_client

from dreem_operator.controller import Reconciler
from dreem_operator.kube import ClusterApi
from dreem_operator.metrics import OperatorMetrics
from dreem_operator.names import LABEL_JOB
from dreem_operator.settings import RuntimeSettings
from dreem_trainer.contract import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


def load_kubernetes_config() -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def resync_forever(reconciler: Reconciler, every: float, stop: threading.Event) -> None:
    """Deadlines and TTLs come due without any event, and an event handled while the API failed is retried."""
    while not stop.wait(every):
        for namespace, name in reconciler.known_jobs():
            try:
                reconciler.reconcile(namespace, name)
            except Exception:
                log.exception("reconcile of %s/%s failed; retrying in %s s", namespace, name, every)


@kopf.on.startup()
def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    runtime: RuntimeSettings = memo.get("runtime") or RuntimeSettings.from_env()
    settings.posting.level = logging.WARNING
    # The CRD comes with the chart and the namespaces with the settings: no cluster-wide scanning of either,
    # which also spares the operator the RBAC to list namespaces and CRDs.
    settings.scanning.disabled = True
    # Handlers block on API calls; enough threads that one slow job never holds up the others.
    settings.execution.max_workers = runtime.workers
    settings.watching.server_timeout = 300
    load_kubernetes_config()
    metrics = OperatorMetrics()
    memo.reconciler = Reconciler(ClusterApi(), runtime.decisions, metrics)
    memo.stop_resync = threading.Event()
    threading.Thread(
        target=resync_forever,
        args=(memo.reconciler, runtime.resync_seconds, memo.stop_resync),
        name="resync",
        daemon=True,
    ).start()
    if runtime.metrics_port:
        memo.metrics_server, _thread = prometheus_client.start_http_server(
            runtime.metrics_port, registry=metrics.registry
        )
    log.info("dreem-operator started; trainer image %s", runtime.trainer_image)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.stop_resync.set()
    if memo.get("metrics_server") is not None:
        memo.metrics_server.shutdown()


@kopf.on.event(GROUP, VERSION, PLURAL)
def job_changed(type: str, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is None:
        return  # DreemTrainingJobs are namespaced; nothing else can arrive here
    if type == "DELETED":
        memo.reconciler.forget(namespace, name)
    else:
        memo.reconciler.reconcile(namespace, name)


@kopf.on.event("v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
def pod_changed(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    if namespace is not None:
        memo.reconciler.reconcile(namespace, labels[LABEL_JOB])
