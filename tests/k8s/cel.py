"""A CRD's validation rules (`x-kubernetes-validations`), evaluated the way the API server does, with
cel-python: a rule runs where its value is present and not null, and a transition rule (one that names
`oldSelf`) only on updates, where the old value is present too. A rule on the root sees, of the object's
metadata, only `name` and `generateName` (the API server declares no other metadata field to CEL), and its
error is reported at the path `<nil>`, as the API server words it."""

from __future__ import annotations

from functools import cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celtypes import BoolType
from celpy.evaluation import CELEvalError

Schema = dict[str, Any]


@cache
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def holds(rule: str, value: Any, old: Any = None) -> bool:
    """Whether `rule` holds for `value` (and `old`); a rule that cannot be evaluated does not hold."""
    activation = {"self": json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    try:
        result = _program(rule).evaluate(activation)
    except CELEvalError:
        return False
    return isinstance(result, BoolType) and bool(result)


ROOT_METADATA = ("name", "generateName")


def as_root(obj: Any) -> Any:
    """An object as the rules on its root see it: its metadata reduced to name and generateName."""
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return obj
    metadata = {key: obj["metadata"][key] for key in ROOT_METADATA if key in obj["metadata"]}
    return {**obj, "metadata": metadata}


def violations(schema: Schema, value: Any, old: Any = None, path: str = "") -> list[str]:
    """`path: Invalid value: "type": message` for every rule `value` breaks, as the API server words them."""
    if value is None:
        return []
    found = []
    seen, seen_old = (as_root(value), as_root(old)) if not path else (value, old)
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue
        if not holds(rule["rule"], seen, seen_old if transition else None):
            field = rule.get("fieldPath", "")
            target = schema.get("properties", {}).get(field.lstrip("."), schema) if field else schema
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            where = f"{path}{field}" or "<nil>"
            found.append(f'{where}: Invalid value: "{target.get("type", "object")}": {message}')
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            previous = old.get(name) if isinstance(old, dict) else None
            found += violations(child, value.get(name), previous, f"{path}.{name}" if path else name)
    elif isinstance(value, list) and "items" in schema:
        # Items of a list are not matched to old items here: their transition rules do not run.
        for index, item in enumerate(value):
            found += violations(schema["items"], item, None, f"{path}[{index}]")
    return found
