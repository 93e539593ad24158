"""The DreemTrainingJob CustomResourceDefinition, generated from the API models (`make crds`).

Kubernetes needs a *structural* OpenAPI v3 schema: every node typed, no unions. Pydantic's JSON schema
is turned into one here: `$ref`s are inlined, `X | None` becomes `nullable`, an int-or-string union
becomes `x-kubernetes-int-or-string`, and the unions Kubernetes cannot express (an int or a list of
ints, say) and the pass-through sections keep `x-kubernetes-preserve-unknown-fields`, leaving their
finer checks to the trainer's schema, which the operator applies before it creates any pod.
Descriptions are kept, so `kubectl explain dtj.spec.config.model.d_model` prints the document's text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from dreem_operator.api import ApiModel, DreemTrainingJobSpec, DreemTrainingJobStatus, Storage
from dreem_operator.names import JobNames
from dreem_trainer.contract import GROUP, KIND, PLURAL, SHORT_NAME, VERSION

Schema = dict[str, Any]
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / f"{PLURAL}.{GROUP}.yaml"
CHART_CRD_FILE = CRD_FILE.parents[1] / "charts" / "dreem-operator" / "crds" / CRD_FILE.name
"""Helm installs what lies in the chart's crds/; a test keeps it identical to crds/."""

_KEPT = (
    "description",
    "enum",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
)
_JSON_TYPES = {"integer", "number", "string", "boolean", "array", "object"}


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """One node of a pydantic JSON schema as a structural OpenAPI v3 schema node."""
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = structural(target, defs)
        if "description" in node:
            merged["description"] = node["description"]
        return merged
    if "anyOf" in node:
        return _union(node, defs)
    out: Schema = {key: node[key] for key in _KEPT if key in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:
            out[flag] = node[bound]
            out[bound] = True
    kind = node.get("type")
    if kind is None and node.get("enum") and all(isinstance(value, str) for value in node["enum"]):
        kind = "string"
    if kind == "object" or "properties" in node:
        out["type"] = "object"
        properties = node.get("properties", {})
        if properties:
            out["properties"] = {name: structural(child, defs) for name, child in properties.items()}
        extra = node.get("additionalProperties")
        if extra is True or (not properties and extra is None):
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(extra, dict):
            out["additionalProperties"] = structural(extra, defs)
        if node.get("required"):
            out["required"] = list(node["required"])
        return out
    if kind == "array":
        out["type"] = "array"
        items = node.get("items") or (node.get("prefixItems") or [{}])[0]
        out["items"] = structural(items, defs)
        return out
    if kind in _JSON_TYPES:
        out["type"] = kind
        return out
    out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _union(node: Schema, defs: dict[str, Schema]) -> Schema:
    branches = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
    nullable = len(branches) < len(node["anyOf"])
    if len(branches) == 1:
        out = structural({**branches[0], **{k: v for k, v in node.items() if k in _KEPT}}, defs)
    elif {branch.get("type") for branch in branches} == {"integer", "string"}:
        out = {"x-kubernetes-int-or-string": True}
    elif {branch.get("type") for branch in branches} == {"integer", "number"}:
        out = {"type": "number"}
    else:
        out = {"x-kubernetes-preserve-unknown-fields": True}
    if "description" in node:
        out["description"] = node["description"]
    if nullable:
        out["nullable"] = True
    return out


def _schema_of(model: type[Any]) -> Schema:
    raw = model.model_json_schema()
    return structural(raw, raw.get("$defs", {}))


FIXED_AT_CREATION: dict[type[ApiModel], tuple[str, ...]] = {
    DreemTrainingJobSpec: ("config", "nodes", "gpusPerNode"),
    Storage: ("output", "endpoint", "region", "addressingStyle"),
}
"""What a running job is made of, so it cannot change once the job exists: the config, the gang's shape and
where it stores are written into the ConfigMap and into the DDP world of running ranks, and a change would
split the gang or resume elsewhere. The rest (credentials, image, run policy, scheduling) may change and
applies from the next gang on."""


def _add_rules(schema: Schema, model: type[ApiModel], path: str) -> None:
    """CEL rules keeping each of the model's FIXED_AT_CREATION fields unchanged.

    A rule on the field itself runs only when both values are there. So a field with a default is compared
    through it by a rule on the model's object (adding `nodes: 4` to a job that had no `nodes` is refused), and
    an optional one (`endpoint`) gets a rule there that it is present on both sides or on neither.
    """
    for name in FIXED_AT_CREATION[model]:
        message = (
            f"{path}.{name} cannot change once the job exists: create a new DreemTrainingJob (it can resume from "
            "this one's checkpoint with model.ckpt_path)"
        )
        field = model.model_fields[name]
        if field.is_required() or field.default is None:
            rule = {"rule": "self == oldSelf", "message": message}
            schema["properties"][name].setdefault("x-kubernetes-validations", []).append(rule)
            if field.default is None:  # present on one side only: the field's own rule does not run
                rule = {"rule": f"has(self.{name}) == has(oldSelf.{name})", "message": message, "fieldPath": f".{name}"}
                schema.setdefault("x-kubernetes-validations", []).append(rule)
            continue
        default = json.dumps(field.default)
        unchanged = (
            f"(has(self.{name}) ? self.{name} : {default}) == (has(oldSelf.{name}) ? oldSelf.{name} : {default})"
        )
        rule = {"rule": unchanged, "message": message, "fieldPath": f".{name}"}
        schema.setdefault("x-kubernetes-validations", []).append(rule)


LABEL_LIMIT = 63
"""The most characters of a DNS label (RFC 1035/1123), a hostname and a label value."""
LARGEST_INDEX = 999_999
"""The largest rank and attempt number the name rule leaves room for (six digits each)."""
DNS_1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"


def label_bound_names(names: JobNames) -> list[str]:
    """What the operator derives from a job's name that must fit in one DNS label or label value: the
    headless Service (a DNS-1035 label), the pods' hostnames `<job>-<rank>` (DNS-1123 labels) and the
    values of the children's labels, for the largest rank and attempt allowed for."""
    labels = names.labels(attempt=LARGEST_INDEX, rank=LARGEST_INDEX)
    return [names.service, names.hostname(LARGEST_INDEX), *labels.values()]


def longest_job_name() -> int:
    """The longest job name whose label-bound children's names all fit in LABEL_LIMIT."""
    fits = [
        n for n in range(1, LABEL_LIMIT + 1) if all(len(x) <= LABEL_LIMIT for x in label_bound_names(JobNames("a" * n)))
    ]
    return max(fits)


def name_rules() -> list[Schema]:
    """CEL rules on metadata.name (the API server lets a root rule see it), refusing a job at once, with the
    reason, when its children could not be created under its name."""
    longest = longest_job_name()
    return [
        {
            "rule": f"size(self.metadata.name) <= {longest}",
            "message": f"metadata.name must be at most {longest} characters: the job's pods get the hostnames "
            f"'<name>-<rank>', which must be DNS labels of at most {LABEL_LIMIT} characters for ranks of up to "
            f"{len(str(LARGEST_INDEX))} digits",
        },
        {
            "rule": f"self.metadata.name.matches('{DNS_1035_LABEL}')",
            "message": "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', starting with a "
            "letter and ending with a letter or digit): it names the job's headless Service",
        },
    ]


def build_crd() -> Schema:
    spec = _schema_of(DreemTrainingJobSpec)
    _add_rules(spec, DreemTrainingJobSpec, "spec")
    _add_rules(spec["properties"]["storage"], Storage, "spec.storage")
    status = _schema_of(DreemTrainingJobStatus)
    # One condition per type, enforced by the API server and merged by type in server-side apply.
    status["properties"]["conditions"].update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        # Running's reason is the job's current one: what it waits for, or why it stopped.
                        {
                            "name": "Reason",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Running")].reason',
                        },
                        {"name": "Epoch", "type": "integer", "jsonPath": ".status.progress.epoch"},
                        {"name": "Val-Loss", "type": "number", "jsonPath": ".status.progress.metrics.val_loss"},
                        {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        {"name": "Disruptions", "type": "integer", "jsonPath": ".status.disruptions", "priority": 1},
                        {"name": "Attempt", "type": "integer", "jsonPath": ".status.attempt", "priority": 1},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-validations": name_rules(),
                            "description": "A DREEM tracker training run: one training YAML, run as gang-scheduled "
                            "DDP pods that read from and write to S3-compatible storage.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated by `make crds` (python -m dreem_operator.crd) from dreem_operator.api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main() -> int:
    for target in (CRD_FILE, CHART_CRD_FILE):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render())
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
