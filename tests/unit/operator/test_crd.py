"""The DreemTrainingJob CRD: generated from the models, structural, documented, and as strict as it can be."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from dreem_operator.api import DreemTrainingJobSpec
from dreem_operator.crd import CRD_FILE, build_crd, render
from dreem_trainer.config.model import ModelConfig
from tests.conftest import TEST_DATA
from tests.k8s.cel import violations

MARKERS = ("type", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")


def version_schema() -> dict[str, Any]:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if "items" in node:
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def job(config: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dreem.sleap.ai/v1alpha1",
        "kind": "DreemTrainingJob",
        "metadata": {"name": "flies"},
        "spec": {"config": config or {}, "storage": {"output": "s3://lab/runs/flies"}, **spec},
    }


def test_crds_folder_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render(), "crds/ drifted from dreem_operator.api: run `make crds`"


def test_schema_is_structural() -> None:
    for path, node in walk(version_schema()):
        assert any(marker in node for marker in MARKERS), f"{path} has no type"
        assert not {"anyOf", "oneOf", "allOf", "$ref", "prefixItems", "title"} & set(node), path


def test_descriptions_reach_kubectl_explain() -> None:
    spec = version_schema()["properties"]["spec"]
    d_model = spec["properties"]["config"]["properties"]["model"]["properties"]["d_model"]
    assert d_model["description"] == ModelConfig.model_fields["d_model"].description
    fields = [(path, node) for path, node in walk(spec) if path and not path.endswith(("[]", "{}"))]
    undocumented = [path for path, node in fields if path.count(".") <= 4 and "description" not in node]
    assert undocumented == [], undocumented[:10]


def test_names_columns_and_status() -> None:
    crd = build_crd()["spec"]
    assert crd["names"]["shortNames"] == ["dtj"] and crd["scope"] == "Namespaced"
    version = crd["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Reason",
        "Epoch",
        "Val-Loss",
        "Restarts",
        "Age",
        "Disruptions",
        "Attempt",
    ]


OUT = {"output": "s3://b/runs"}


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        ({"config": {"seed": 1}}, {"config": {"seed": 2}}, "spec.config"),
        ({}, {"nodes": 4}, "spec.nodes"),
        ({"nodes": 2}, {}, "spec.nodes"),
        ({}, {"nodes": 1}, None),
        ({"gpusPerNode": 4}, {"gpusPerNode": 8}, "spec.gpusPerNode"),
        ({"storage": OUT}, {"storage": {"output": "s3://b/elsewhere"}}, "spec.storage.output"),
        (
            {"storage": OUT | {"endpoint": "http://a:9000"}},
            {"storage": OUT | {"endpoint": "http://b:9000"}},
            "spec.storage.endpoint",
        ),
        ({"storage": OUT | {"region": "eu-west-1"}}, {"storage": OUT | {"region": "us-east-1"}}, "spec.storage.region"),
        ({"storage": OUT}, {"storage": OUT | {"endpoint": "http://other:9000"}}, "spec.storage.endpoint"),
        ({"storage": OUT | {"region": "eu-west-1"}}, {"storage": OUT}, "spec.storage.region"),
        ({"storage": OUT}, {"storage": OUT | {"addressingStyle": "path"}}, "spec.storage.addressingStyle"),
        ({"storage": OUT}, {"storage": OUT | {"addressingStyle": "auto", "credentialsSecret": "rotated"}}, None),
        (
            {"image": "trainer:1", "runPolicy": {"suspend": False}},
            {
                "image": "trainer:2",
                "runPolicy": {"suspend": True, "backoffLimit": 5},
                "podTemplate": {"nodeSelector": {"a": "b"}},
            },
            None,
        ),
    ],
)
def test_the_rules_keep_what_a_running_job_is_made_of(
    old: dict[str, Any], new: dict[str, Any], refused: str | None
) -> None:
    schema = version_schema()
    named = {"metadata": {"name": "flies"}}
    found = violations(schema, named | {"spec": new}, named | {"spec": old})
    if refused is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(f"{refused}: Invalid value"), found
        assert f"{refused} cannot change once the job exists: create a new DreemTrainingJob" in found[0]
    assert violations(schema, named | {"spec": new}) == []  # creating a job runs no transition rule


def test_schema_accepts_the_spec_example_and_what_the_models_accept() -> None:
    validator = OAS30Validator(version_schema())
    config = yaml.safe_load((TEST_DATA / "spec_example.yaml").read_text())
    manifest = job(
        config, nodes=2, gpusPerNode=4, runPolicy={"backoffLimit": 2}, podTemplate={"nodeSelector": {"gpu": "a100"}}
    )
    validator.validate(manifest)
    DreemTrainingJobSpec.model_validate(manifest["spec"])


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("config", "model", "d_model"), "big"),
        (("config", "model", "dropout"), -0.1),
        (("config", "model", "activation"), "tanh"),
        (("config", "trainer", "max_epochs"), -5),
        (("nodes",), 0),
        (("gpusPerNode",), -1),
        (("runPolicy", "cleanPodPolicy"), "Some"),
        (("storage",), None),
    ],
    ids=lambda v: ".".join(v) if isinstance(v, tuple) else repr(v),
)
def test_schema_rejects_wrong_values(path: tuple[str, ...], value: Any) -> None:
    manifest = copy.deepcopy(job({"model": {}, "trainer": {}}, runPolicy={}))
    node = manifest["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    assert not OAS30Validator(version_schema()).is_valid(manifest)
