"""The cluster guide documents every field of the job spec and every value of the chart."""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from dreem_operator.api import DreemTrainingJobSpec
from tests.conftest import REPO_ROOT

GUIDE = REPO_ROOT / "docs" / "cluster.md"


def spec_fields(model: type[BaseModel], prefix: str) -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}"
        nested = field.annotation
        if name != "config" and isinstance(nested, type) and issubclass(nested, BaseModel):
            paths += spec_fields(nested, path)
        else:
            paths.append(path)
    return paths


def value_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        keys += value_keys(value, f"{path}.") if isinstance(value, dict) and value and key != "resources" else [path]
    return keys


def test_every_spec_field_is_documented() -> None:
    guide = GUIDE.read_text()
    missing = [path for path in spec_fields(DreemTrainingJobSpec, "spec") if f"`{path}`" not in guide]
    assert missing == []


def test_every_chart_value_is_documented() -> None:
    guide = GUIDE.read_text()
    values = yaml.safe_load((REPO_ROOT / "charts" / "dreem-operator" / "values.yaml").read_text())
    missing = [key for key in value_keys(values) if f"`{key}`" not in guide]
    assert missing == []
