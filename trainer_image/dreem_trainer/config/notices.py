"""Keys accepted for DREEM's configurations that do nothing, there or here.

DREEM 0.5.1 stores some keys without ever reading them (`tracker.decay_time`, `use_vis_feats`, ...). Its
configurations must load unchanged, yet a user who sets one should learn that it does nothing. Such a field
is marked `json_schema_extra=no_effect(why)` and `exclude=True` (so no resolved configuration carries it
on); the loader then prints one warning line for each one the user wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from dreem_trainer.config.issues import ConfigIssue

NO_EFFECT = "no_effect"
"""json_schema_extra key of a field DREEM accepts but never reads: giving it draws a warning naming it."""


def no_effect(reason: str) -> dict[str, Any]:
    """`json_schema_extra` for a field accepted only because DREEM accepts it; `reason` says why it does nothing."""
    return {NO_EFFECT: reason}


def no_effect_notices(
    config: BaseModel, given: Mapping[str, Any], path: tuple[str | int, ...] = ()
) -> list[ConfigIssue]:
    """A notice for every no-effect key in `given` (the keys the user wrote, as a nested mapping), found by
    walking the validated `config` beside it."""
    notices = []
    for name, field in type(config).model_fields.items():
        if given.get(name) is None:  # left out, or written null: no value to have an effect
            continue
        extra = field.json_schema_extra
        where = (*path, name)
        if isinstance(extra, dict) and NO_EFFECT in extra:
            notices.append(
                ConfigIssue(
                    ".".join(map(str, where)),
                    f"accepted for DREEM configurations but has no effect: {extra[NO_EFFECT]}",
                    has_value=False,
                    loc=where,
                )
            )
            continue
        value, written = getattr(config, name), given[name]
        if isinstance(value, BaseModel) and isinstance(written, Mapping):
            notices += no_effect_notices(value, written, where)
        elif isinstance(value, Mapping) and isinstance(written, Mapping):
            for key, item in value.items():
                if isinstance(item, BaseModel) and isinstance(written.get(key), Mapping):
                    notices += no_effect_notices(item, written[key], (*where, key))
    return notices
