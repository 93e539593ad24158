"""Server-side printing, as the API server does it for a custom resource: `kubectl get` asks for a Table and
prints the CRD's additionalPrinterColumns from it (k8s.io/apiextensions-apiserver's tableconvertor).

Only the JSONPath the columns use is understood: field steps (`.status.phase`) and a filter on a list
(`.status.conditions[?(@.type=="Running")].reason`). A path that finds nothing gives an empty cell, as
the server's convertor gives nil; a `date` column shows the age, as kubectl's `AGE` does."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

KubernetesObject = dict[str, Any]
_STEP = re.compile(r'\.([A-Za-z0-9_-]+)(?:\[\?\(@\.([A-Za-z0-9_-]+)=="([^"]*)"\)\])?')


def find(obj: Any, path: str) -> Any:
    """The value at a printer column's JSONPath, or None."""
    node = obj
    position = 0
    while position < len(path):
        step = _STEP.match(path, position)
        if step is None:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        field, key, wanted = step.groups()
        node = node.get(field) if isinstance(node, dict) else None
        if key is not None:
            node = next((item for item in node or [] if isinstance(item, dict) and item.get(key) == wanted), None)
        if node is None:
            return None
        position = step.end()
    return node


def human_duration(seconds: int) -> str:
    """k8s.io/apimachinery's duration.HumanDuration, as far as a test runs."""
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    return f"{minutes // 60}h"


def _cell(column: KubernetesObject, obj: KubernetesObject) -> Any:
    value = find(obj, column["jsonPath"])
    if value is None or column.get("type") != "date":
        return value
    born = datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return human_duration(int((datetime.now(UTC) - born).total_seconds()))


def table(columns: list[KubernetesObject], objects: list[KubernetesObject], resource_version: str) -> KubernetesObject:
    definitions = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0},
        *[
            {
                "name": column["name"],
                "type": column.get("type", "string"),
                "format": column.get("format", ""),
                "description": column.get("description", ""),
                "priority": column.get("priority", 0),
            }
            for column in columns
        ],
    ]
    rows = [
        {
            "cells": [obj["metadata"]["name"], *[_cell(column, obj) for column in columns]],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
        }
        for obj in objects
    ]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
