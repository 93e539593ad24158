"""Patch `status.progress` of the DreemTrainingJob this pod belongs to.

The operator names the job in the pod's environment (ENV_JOB, ENV_JOB_NAMESPACE) and gives the pod a
ServiceAccount whose Role may patch that one job's status, so a pod can report on its own job and no other.
Reporting is a courtesy: failures are logged once and never stop training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from dreem_trainer.contract import (
    ENV_JOB,
    ENV_JOB_NAMESPACE,
    ENV_PROGRESS_SECONDS,
    GROUP,
    PLURAL,
    STATUS_PATCH,
    VERSION,
    ProgressReport,
)

log = logging.getLogger(__name__)

DEFAULT_PROGRESS_SECONDS = 30.0


class JobStatus:
    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self._api: Any = None
        self._failed = False

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config  # only pods that report need the client

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            self._api = client.CustomObjectsApi()
        return self._api

    def report(self, progress: ProgressReport) -> bool:
        """Merge `progress` into status.progress; False (and one warning) when the API refuses."""
        try:
            self._client().patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                {"status": {"progress": dict(progress)}},
                _content_type=STATUS_PATCH,
            )
        except Exception as error:  # the API, the network or the credentials: none may stop training
            if not self._failed:
                log.warning("cannot report progress to DreemTrainingJob %s/%s: %s", self.namespace, self.name, error)
            self._failed = True
            return False
        return True


def job_from_environment(environ: Mapping[str, str] = os.environ) -> JobStatus | None:
    name, namespace = environ.get(ENV_JOB), environ.get(ENV_JOB_NAMESPACE)
    return JobStatus(namespace, name) if name and namespace else None


def progress_interval(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between progress reports within an epoch (ENV_PROGRESS_SECONDS, default 30)."""
    try:
        return max(float(environ.get(ENV_PROGRESS_SECONDS, DEFAULT_PROGRESS_SECONDS)), 0.1)
    except ValueError:
        return DEFAULT_PROGRESS_SECONDS
