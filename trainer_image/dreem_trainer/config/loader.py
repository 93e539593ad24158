"""The one config loader: YAML file, then `--set` overrides, then typed flags, validated together.

Precedence is schema defaults < config file < `--set key.path=value` < flags the user actually typed.
A flag the user left out is never passed here, so it cannot override the file.
"""

from __future__ import annotations

import copy
import logging
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dreem_trainer.config.issues import ISSUE_TYPE, ConfigError, ConfigIssue, did_you_mean
from dreem_trainer.config.notices import no_effect_notices
from dreem_trainer.config.root import DreemConfig

log = logging.getLogger(__name__)

KeyPath = tuple[str | int, ...]

_UNION_TAG = re.compile(
    r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|tuple\[.*\]|literal\[.*\]|function-[a-z]+\[.*\]|[A-Z]\w*Config)$"
)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} given twice (first on line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from a file, or a ConfigError naming the file and the line."""
    source = str(path)
    file = Path(path)
    if not file.is_file():
        raise ConfigError([ConfigIssue(source, "no such config file", has_value=False)])
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        hint = " (a checkpoint? give it with --checkpoint)" if file.suffix in (".ckpt", ".pt", ".pth") else ""
        problem = f"not a UTF-8 text YAML file{hint}; save it as UTF-8"
        raise ConfigError([ConfigIssue(source, problem, has_value=False)]) from None
    loader = _StrictLoader(text)
    try:  # composed once: the node tree tells an empty section from a null, the data is built from it
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as error:
        raise ConfigError([ConfigIssue(source, f"not valid YAML: {error}", has_value=False)]) from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(source, "the top level must be a mapping of sections", type(data).__name__)])
    for section in empty_sections(root):
        if section in NULL_MEANS:
            log.warning(
                "warning: %s: written with nothing under it, which YAML reads as null: %s. Write `%s: null` to "
                "say so, or leave the section out for its defaults",
                section,
                NULL_MEANS[section],
                section,
            )
    return data


NULL_MEANS = {
    "logging": "no logger",
    "early_stopping": "no early stopping",
    "scheduler": "DREEM's fallback scheduler (ReduceLROnPlateau on val_loss, patience 10)",
}
"""Sections whose null turns a default off or swaps it: what that null means, for the notice when a section
was left empty (its keys all commented out, say) rather than written null on purpose."""


def empty_sections(root: yaml.Node | None) -> list[str]:
    """The top-level keys of a composed document written with no value at all (`logging:` and then the next
    section), as opposed to an explicit `null` or `~`: both read as null, only one is likely meant."""
    if not isinstance(root, yaml.MappingNode):
        return []
    return [
        key.value
        for key, value in root.value
        if isinstance(key, yaml.ScalarNode)
        and isinstance(value, yaml.ScalarNode)
        and value.tag == "tag:yaml.org,2002:null"
        and value.value == ""
    ]


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """`model.d_model=256` -> (("model", "d_model"), 256); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError([ConfigIssue("--set", "expected key.path=value", text)])
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return tuple(key.strip().split(".")), parsed


def set_path(raw: dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set `value` at `path`, creating mappings on the way (and replacing a null section)."""
    node = raw
    for index, part in enumerate(path[:-1]):
        child = node.get(str(part))
        if not isinstance(child, dict):
            if child is not None:
                where = format_path(path[: index + 1])
                raise ConfigError(
                    [ConfigIssue(where, f"cannot set {format_path(path)}: {where} is not a section", child)]
                )
            child = node[str(part)] = {}
        node = child
    node[str(path[-1])] = value


def section_at(path: Sequence[str | int]) -> type[BaseModel] | None:
    """The section class found at `path`, for did-you-mean suggestions."""
    model: type[BaseModel] | None = DreemConfig
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        model = _first_model(model.model_fields[part].annotation)
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def issues_from(error: ValidationError) -> list[ConfigIssue]:
    """Readable issues from pydantic's errors: union branches folded, unknown keys with a did-you-mean."""
    by_path: dict[str, ConfigIssue] = {}
    for entry in error.errors():
        loc = [part for part in entry["loc"] if not (isinstance(part, str) and _UNION_TAG.match(part))]
        ctx = entry.get("ctx") or {}
        value = entry.get("input")
        message = entry["msg"]
        if entry["type"] == ISSUE_TYPE:
            loc += str(ctx["key"]).split(".")
            value = ctx.get("value")
            message = message.removeprefix("Value error, ")
        elif entry["type"] == "extra_forbidden":
            parent = section_at(loc[:-1])
            known = set(parent.model_fields) if parent is not None else set()
            message = f"unknown key{did_you_mean(str(loc[-1]), known)}"
        else:
            message = message.removeprefix("Value error, ")
        path = format_path(loc) or "(top level)"
        if path in by_path:
            previous = by_path[path]
            if message not in previous.message:
                by_path[path] = ConfigIssue(path, f"{previous.message}; or {message}", previous.value, loc=previous.loc)
            continue
        by_path[path] = ConfigIssue(path, message, value, loc=tuple(loc))
    return list(by_path.values())


def _drop(raw: dict[str, Any], loc: KeyPath) -> bool:
    node: Any = raw
    for part in loc[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return False
    if isinstance(node, dict) and loc and loc[-1] in node:
        del node[loc[-1]]
        return True
    return False


def validate(raw: Mapping[str, Any], source: str | None = None) -> DreemConfig:
    """Validate, reporting every problem at once.

    A section's cross-key checks only run once its keys parse, so after each round the keys already
    reported are dropped and the rest validated again, until no new problem appears.
    """
    attempt = copy.deepcopy(dict(raw))
    issues: dict[str, ConfigIssue] = {}
    for _ in range(_MAX_ROUNDS):
        try:
            config = DreemConfig.model_validate(attempt)
        except ValidationError as error:
            new = [issue for issue in issues_from(error) if issue.path not in issues]
            issues.update((issue.path, issue) for issue in new)
            dropped = [_drop(attempt, issue.loc) for issue in new]  # every one: no short-circuit
            if not any(dropped):
                break
        else:
            if not issues:
                return config
            break
    raise ConfigError(list(issues.values()), source)


_MAX_ROUNDS = 25


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Sequence[tuple[KeyPath, Any]] = (),
    base: Mapping[str, Any] | None = None,
) -> DreemConfig:
    """Resolve a configuration the way every entry point does: [base <] file < `--set` < typed flags.

    `base` is a configuration the file refines, e.g. the one stored in a checkpoint for `dreem track`.
    """
    raw = resolve_raw(path, overrides, flags, base)
    config = validate(raw, str(path) if path is not None else None)
    # Only the user's own keys draw warnings, not those of a checkpoint's stored configuration.
    for notice in no_effect_notices(config, resolve_raw(path, overrides, flags) if base is not None else raw):
        log.warning("warning: %s", notice)
    return config


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass(frozen=True)
class Implied:
    """A flag's value for a key the user did not write (in the file or with --set): DREEM's `-vt tif` implies
    CTC labels, but not over a labels suffix the user chose (a TrackMate CSV beside its TIFF stack)."""

    value: Any


def resolve_raw(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Sequence[tuple[KeyPath, Any]] = (),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    raw: dict[str, Any] = read_yaml(path) if path is not None else {}
    user = copy.deepcopy(raw)
    if base is not None:
        raw = deep_merge(base, raw)
    for text in overrides:
        key_path, value = parse_override(text)
        set_path(raw, key_path, value)
        set_path(user, key_path, value)
    for key_path, value in flags:
        for target in _expand_splits(raw, key_path):
            if not isinstance(value, Implied):
                set_path(raw, target, value)
            elif not _written(user, target):
                set_path(raw, target, value.value)
    return _with_params_config(raw)


def _written(raw: Mapping[str, Any], path: KeyPath) -> bool:
    node: Any = raw
    for part in path:
        if not isinstance(node, Mapping) or str(part) not in node:
            return False
        node = node[str(part)]
    return True


PARAMS_CONFIG = "params_config"
"""DREEM's top-level key naming a second YAML file merged over the configuration, command-line values included."""


def _with_params_config(raw: dict[str, Any]) -> dict[str, Any]:
    path = raw.pop(PARAMS_CONFIG, None)
    if path is None:
        return raw
    try:
        params = read_yaml(path)
    except ConfigError as error:
        raise ConfigError([ConfigIssue(PARAMS_CONFIG, issue.message, path) for issue in error.issues]) from None
    return deep_merge(raw, params)


EVERY_SPLIT = "*"
"""`("dataset", EVERY_SPLIT, "crop_size")` sets the key on the train split and on every other split present."""


def _expand_splits(raw: Mapping[str, Any], key_path: KeyPath) -> list[KeyPath]:
    if key_path[:2] != ("dataset", EVERY_SPLIT):
        return [key_path]
    dataset = raw.get("dataset") or {}
    splits = ["train_dataset", *(s for s in ("val_dataset", "test_dataset") if isinstance(dataset.get(s), dict))]
    return [("dataset", split, *key_path[2:]) for split in splits]


SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml's emitter where PyYAML has it: the same text several times faster (the operator writes every
new job's resolved config into its ConfigMap, and this was most of its CPU time per job)."""


def dump_yaml(config: DreemConfig) -> str:
    """The fully resolved configuration as YAML, sections in schema order, extra keys kept."""
    return yaml.dump(config.model_dump(mode="json"), Dumper=SAFE_DUMPER, sort_keys=False, default_flow_style=False)
