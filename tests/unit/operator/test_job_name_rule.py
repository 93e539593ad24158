"""The CRD's rule on metadata.name: it refuses, at `kubectl apply`, exactly the names whose children the API
server would refuse later (a Service that is not a DNS-1035 label, a hostname or label value over 63
characters), and says why. The limits below are the API server's validators (apimachinery
pkg/util/validation), not the operator's code."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from dreem_operator.api import DreemTrainingJobStatus
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.crd import LARGEST_INDEX, build_crd, longest_job_name
from dreem_operator.reconcile import Observation, reconcile
from tests.k8s.cel import violations

DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
SETTINGS = OperatorSettings(trainer_image="trainer:test", master_port=29500, secret_grace_seconds=60)


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def refusals(name: str) -> list[str]:
    return violations(root_schema(), {"metadata": {"name": name}, "spec": {}})


def children_problems(name: str, nodes: int) -> list[str]:
    """What the API server would refuse among the children the operator creates for a new job `name`."""
    job = JobRef(name, "lab", "uid-1")
    spec = {
        "config": {"dataset": {"train_dataset": {"dir": {"path": "s3://lab/flies"}}}},
        "nodes": nodes,
        "storage": {"output": "s3://lab/runs"},
    }
    now = datetime(2026, 11, 25, 12, 0, 0)
    plan = reconcile(job, spec, DreemTrainingJobStatus(), 1, Observation([], now), SETTINGS)
    assert [obj for obj in plan.create if obj["kind"] == "Pod"], "the plan creates no pods"
    problems = []
    for obj in plan.create:
        meta, kind = obj["metadata"], obj["kind"]
        label_kind = DNS_1035_LABEL if kind == "Service" else DNS_1123_SUBDOMAIN
        limit = 63 if kind == "Service" else 253
        if not label_kind.fullmatch(meta["name"]) or len(meta["name"]) > limit:
            problems.append(f"{kind} name {meta['name']}")
        for key, value in (meta.get("labels") or {}).items():
            if not LABEL_VALUE.fullmatch(value) or len(value) > 63:
                problems.append(f"{kind} {meta['name']} label {key}={value}")
        hostname = obj.get("spec", {}).get("hostname")
        if hostname is not None and (not DNS_1123_LABEL.fullmatch(hostname) or len(hostname) > 63):
            problems.append(f"{kind} {meta['name']} hostname {hostname}")
    return problems


def test_the_longest_name_allowed_leaves_every_child_valid_and_one_more_character_does_not() -> None:
    longest = longest_job_name()
    # The longest hostname is '<name>-<rank>' for a six-digit rank: 63 - 1 - 6.
    assert longest == 63 - 1 - len(str(LARGEST_INDEX))
    assert children_problems("a" * longest, nodes=2) == []
    # The bound is met with the largest rank allowed for (a million nodes is not built here: the hostname is).
    assert len(JobRef("a" * longest, "lab", "u").names.hostname(LARGEST_INDEX)) == 63
    assert len(JobRef("a" * (longest + 1), "lab", "u").names.hostname(LARGEST_INDEX)) == 64


def test_a_name_at_the_limit_passes_the_rule() -> None:
    assert refusals("a" * longest_job_name()) == []
    assert refusals("flies-2026-run3") == []


def test_a_longer_name_is_refused_saying_why() -> None:
    longest = longest_job_name()
    (refusal,) = refusals("a" * (longest + 1))
    assert refusal.startswith('<nil>: Invalid value: "object": ')
    assert f"metadata.name must be at most {longest} characters" in refusal
    assert "'<name>-<rank>'" in refusal and "DNS labels of at most 63 characters" in refusal


@pytest.mark.parametrize("name", ["1flies", "flies.run", "flies-", "Flies", "fl_ies"])
def test_a_name_that_is_no_dns_1035_label_is_refused_saying_why(name: str) -> None:
    (refusal,) = refusals(name)
    assert "metadata.name must be a DNS-1035 label" in refusal
    assert "it names the job's headless Service" in refusal


@pytest.mark.parametrize("name", ["1flies", "flies.run"])
def test_the_names_the_rule_refuses_are_names_whose_service_the_api_server_refuses(name: str) -> None:
    # An RFC 1123 subdomain (what a custom resource's name must be anyway) that the Service name rule refuses.
    assert DNS_1123_SUBDOMAIN.fullmatch(name)
    assert any(problem.startswith("Service name") for problem in children_problems(name, nodes=2))


def test_the_rule_sees_only_the_name_and_generate_name_of_the_metadata() -> None:
    schema = {"type": "object", "x-kubernetes-validations": [{"rule": "!has(self.metadata.labels)"}]}
    assert violations(schema, {"metadata": {"name": "flies", "labels": {"a": "b"}}}) == []
    schema["x-kubernetes-validations"] = [{"rule": "has(self.metadata.generateName)"}]
    assert violations(schema, {"metadata": {"name": "flies-x1", "generateName": "flies-"}}) == []
