"""The operator's leader-election settings, read from the environment as the chart sets them."""

from __future__ import annotations

import pytest

from dreem_operator.settings import RuntimeSettings


def test_the_defaults_are_client_gos() -> None:
    timing = RuntimeSettings.from_env({}).lease_timing
    assert (timing.lease_duration, timing.renew_deadline, timing.retry_period) == (15, 10.0, 2.0)


def test_timing_that_would_let_two_replicas_act_at_once_is_refused_at_start() -> None:
    with pytest.raises(SystemExit) as refused:
        RuntimeSettings.from_env(
            {"DREEM_OPERATOR_LEASE_DURATION_SECONDS": "10", "DREEM_OPERATOR_RENEW_DEADLINE_SECONDS": "12"}
        )
    assert "lease duration (10 s) > renew deadline (12.0 s)" in str(refused.value)
    with pytest.raises(SystemExit) as fractional:
        RuntimeSettings.from_env({"DREEM_OPERATOR_LEASE_DURATION_SECONDS": "2.5"})
    assert "DREEM_OPERATOR_LEASE_DURATION_SECONDS" in str(fractional.value)


def test_each_process_without_a_given_identity_gets_its_own() -> None:
    runtime = RuntimeSettings.from_env({})
    assert runtime.replica_identity() != runtime.replica_identity()
    named = RuntimeSettings.from_env({"DREEM_OPERATOR_IDENTITY": "dreem-operator-7d9f-x2x4q"})
    assert named.replica_identity() == "dreem-operator-7d9f-x2x4q"


def test_the_lease_lives_where_the_chart_says_or_in_default_outside_a_pod() -> None:
    assert RuntimeSettings.from_env({"DREEM_OPERATOR_LEASE_NAMESPACE": "dreem-system"}).lease_home() == "dreem-system"
    assert RuntimeSettings.from_env({}).lease_home() == "default"  # no service-account namespace file here
