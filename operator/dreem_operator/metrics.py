"""Prometheus metrics of the operator: jobs by phase, reconcile errors and reconcile durations."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from dreem_operator.api import Phase


class OperatorMetrics:
    """One instance per operator process; `registry` is what the metrics endpoint serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Gauge("dreem_jobs", "DreemTrainingJobs by phase.", ["phase"], registry=self.registry)
        self.reconcile_errors = Counter(
            "dreem_reconcile_errors", "Reconciles that failed and will be retried.", registry=self.registry
        )
        self.reconcile_duration = Histogram(
            "dreem_reconcile_duration_seconds",
            "Time from reading a job to applying its plan.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self._phases: dict[tuple[str, str], Phase] = {}
        self._lock = threading.Lock()
        for phase in Phase:
            self.jobs.labels(phase=phase).set(0)

    def job_phase(self, namespace: str, name: str, phase: Phase | None) -> None:
        """Record a job's phase (None: the job is gone) and refresh the per-phase counts."""
        with self._lock:
            if phase is None:
                self._phases.pop((namespace, name), None)
            else:
                self._phases[(namespace, name)] = phase
            counts = dict.fromkeys(Phase, 0)
            for current in self._phases.values():
                counts[current] += 1
            for known, count in counts.items():
                self.jobs.labels(phase=known).set(count)
