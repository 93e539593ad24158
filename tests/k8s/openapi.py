"""What the API server does with a custom resource's OpenAPI schema before it stores a write: it prunes the
fields the structural schema does not name (apiextensions' structural pruning), then validates what is left
against the schema, refusing the write with 422 and its field errors' words.

A field the schema does not name is refused with 400 when the client asks for strict field validation
(`fieldValidation=Strict`, which kubectl sends by default), and otherwise dropped, with a warning unless the
client asked to ignore it.

A null in a field that is not `nullable` is dropped too, before validation, as the API server drops it when
the field has no default (none of ours has one).

Pruning keeps, at any level, what `x-kubernetes-preserve-unknown-fields: true` marks (descending only into
the properties the schema names there), every entry of a map with `additionalProperties`, and at the root
`apiVersion`, `kind` and `metadata` (ObjectMeta is the API server's own). Validation is OpenAPI 3.0 with
`nullable` (openapi-schema-validator's OAS30Validator); `x-kubernetes-int-or-string` nodes carry no type
and take either, as they do on a cluster.
"""

from __future__ import annotations

import json
from typing import Any

from openapi_schema_validator import OAS30Validator

Schema = dict[str, Any]
ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def pruned(value: Any, schema: Schema, unknown: list[str] | None = None, at: str = "") -> Any:
    """`value` without the fields `schema` does not name (see the module's docstring); the paths of those
    dropped are added to `unknown`, as the API server names them (`spec.nodez`, `spec.list[0].x`)."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        kept: dict[str, Any] = {}
        for key, item in value.items():
            here = f"{at}.{key}" if at else key
            named = properties.get(key) if properties is not None else None
            field: Schema | None = named if named is not None else additional if isinstance(additional, dict) else None
            if not at and key in ROOT_FIELDS:
                kept[key] = item
            elif field is not None:
                if item is None and not field.get("nullable"):
                    continue  # a null where none is allowed goes before validation (no default to put there)
                kept[key] = pruned(item, field, unknown, here)
            elif preserve or additional is True:
                kept[key] = item
            elif unknown is not None:
                unknown.append(here)
        return kept
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [pruned(item, schema["items"], unknown, f"{at}[{index}]") for index, item in enumerate(value)]
    return value


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(type(value), "object")


_ABSENT = object()


def _at(value: Any, parts: Any) -> Any:
    for part in parts:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return _ABSENT
    return value


def schema_errors(value: Any, schema: Schema, old: Any = None) -> list[str]:
    """The field errors the API server reports for `value`, in its words (apimachinery's field.Error). On an
    update (`old`), an error where the value is as it was is not reported: validation ratcheting (on by default
    since Kubernetes 1.30), without which an object stored under a laxer schema could not even have its
    status written."""
    found = []
    for error in sorted(OAS30Validator(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]):
        path, bad = _path(error.absolute_path), error.instance
        if old is not None and _at(old, error.absolute_path) == bad:
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1]
            found.append(f"{_path([*error.absolute_path, missing])}: Required value")
        elif error.validator == "type":
            kind = _json_type(bad)
            found.append(
                f'{path}: Invalid value: "{kind}": {path} in body must be of type {error.validator_value}: "{kind}"'
            )
        elif error.validator == "enum":
            supported = ", ".join(json.dumps(option) for option in error.validator_value)
            found.append(f"{path}: Unsupported value: {json.dumps(bad)}: supported values: {supported}")
        elif error.validator in ("minimum", "maximum"):
            relation = "greater" if error.validator == "minimum" else "less"
            found.append(
                f"{path}: Invalid value: {json.dumps(bad)}: {path} in body should be {relation} than or equal to "
                f"{error.validator_value}"
            )
        else:
            found.append(f"{path}: Invalid value: {json.dumps(bad)}: {error.message}")
    return list(dict.fromkeys(found))  # one error once, however many of the schema's keywords it breaks
