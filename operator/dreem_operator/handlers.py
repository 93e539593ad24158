"""The kopf handlers. Each only names the job that may need work and hands it to the Reconciler.

No handler stores state on the job (no finalizers, no kopf annotations): the operator writes only the
status and its own children, so GitOps tools never see the operator edit a manifest, and a job deleted
while the operator is down goes at once.

Every replica watches; only the one holding the Lease (dreem_operator.election) reconciles and writes.
kopf's own Event posting is off, since those writes would bypass the leadership fence in ClusterApi.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import kubernetes
import prometheus_client

from dreem_operator.controller import Reconciler
from dreem_operator.election import LeaderElector
from dreem_operator.kube import ClusterApi, LeaseApi
from dreem_operator.metrics import OperatorMetrics
from dreem_operator.names import LABEL_JOB
from dreem_operator.settings import RuntimeSettings
from dreem_trainer.contract import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)


def load_kubernetes_config(connections: int) -> None:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    # One connection per thread that may call the API at once (the client's default is 5 per CPU), so
    # connections are kept instead of discarded and opened anew.
    configuration = kubernetes.client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = connections
    kubernetes.client.Configuration.set_default(configuration)


class Resync:
    """Reconciles every known job every `every` seconds, and at once when poked (this replica became the
    leader): deadlines and TTLs come due without any event, and an event handled while the API failed, or
    while another replica led, is caught up."""

    def __init__(self, reconciler: Reconciler, every: float, workers: int) -> None:
        self.reconciler, self.every = reconciler, every
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="resync")
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="resync", daemon=True)

    def start(self) -> Resync:
        self._thread.start()
        return self

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(30)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.every)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self.reconciler.leading():
                continue
            jobs = self.reconciler.known_jobs()
            for (namespace, name), done in zip(jobs, self._pool.map(self._reconcile, jobs), strict=True):
                if not done:
                    log.warning("reconcile of %s/%s failed; retrying in %s s", namespace, name, self.every)

    def _reconcile(self, job: tuple[str, str]) -> bool:
        try:
            self.reconciler.reconcile(*job)
        except Exception:
            log.exception("reconcile of %s/%s failed", *job)
            return False
        return True


@kopf.on.startup()
def start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    runtime: RuntimeSettings = memo.get("runtime") or RuntimeSettings.from_env()
    settings.posting.enabled = False
    # The CRD comes with the chart and the namespaces with the settings: no cluster-wide scanning of either,
    # which also spares the operator the RBAC to list namespaces and CRDs.
    settings.scanning.disabled = True
    # Handlers block on API calls; enough threads that one slow job never holds up the others.
    settings.execution.max_workers = runtime.workers
    settings.watching.server_timeout = 300
    # Only the pods the operator made reach it: the API server filters the list and the watch (an existence
    # selector), so thousands of other pods in the watched namespaces cost it nothing.
    settings.watching.label_selectors["v1", "pods"] = LABEL_JOB
    load_kubernetes_config(connections=2 * runtime.workers + 2)  # the event workers, the resync's, the election
    metrics = OperatorMetrics()
    elector = LeaderElector(
        LeaseApi(),
        runtime.lease_home(),
        runtime.lease_name,
        runtime.replica_identity(),
        runtime.lease_timing,
        metrics,
    )
    memo.elector = elector
    memo.reconciler = Reconciler(
        ClusterApi(may_write=elector.tenure.leading), runtime.decisions, metrics, leading=elector.tenure.leading
    )
    memo.resync = Resync(memo.reconciler, runtime.resync_seconds, runtime.workers).start()
    elector.on_started = memo.resync.poke
    elector.start()
    if runtime.metrics_port:
        memo.metrics_server, _thread = prometheus_client.start_http_server(
            runtime.metrics_port, registry=metrics.registry
        )
    log.info("dreem-operator started; trainer image %s", runtime.trainer_image)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    # Stop acting, let the reconciles under way land, then hand the Lease over (a standby takes over within
    # its retry period). The drain is bounded: the renew deadline fences whatever is still running.
    memo.elector.stop(before_release=lambda: memo.reconciler.drain(memo.elector.timing.renew_deadline))
    memo.resync.stop()
    if memo.get("metrics_server") is not None:
        memo.metrics_server.shutdown()


@kopf.on.event(GROUP, VERSION, PLURAL)
def job_changed(type: str, name: str, namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any) -> None:
    if namespace is None:
        return  # DreemTrainingJobs are namespaced; nothing else can arrive here
    if type == "DELETED":
        memo.reconciler.forget(namespace, name)
    else:
        reconcile(memo.reconciler, namespace, name, meta.get("resourceVersion"))


@kopf.on.event("v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
def pod_changed(labels: Mapping[str, str], namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any) -> None:
    if namespace is not None:
        reconcile(memo.reconciler, namespace, labels[LABEL_JOB], meta.get("resourceVersion"))


def reconcile(reconciler: Reconciler, namespace: str, name: str, version: str | None) -> None:
    """A failure is logged here rather than raised to kopf (which would post it as an Event, past the fence);
    the resync retries the job."""
    try:
        reconciler.reconcile(namespace, name, version)
    except Exception:
        log.exception("reconcile of %s/%s failed; the resync retries it", namespace, name)
