"""Base classes shared by every section of the training configuration.

The spec says "for defaults, leave fields blank or omit the key" and "use `null` to disable features".
YAML reads a blank value as null, so the two rules meet here: a null on a key whose type cannot be null
means "use the default", while a null on a key that may be null (a whole `logging` section, `ckpt_path`)
keeps its meaning of "off".
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def _accepts_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepts_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_none(arg) for arg in typing.get_args(annotation))
    return False


class Section(BaseModel):
    """A closed section: an unknown key is an error, reported with a did-you-mean."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            key: value
            for key, value in data.items()
            if not (value is None and key in cls.model_fields and not _accepts_none(cls.model_fields[key].annotation))
        }

    def explicit(self) -> dict[str, Any]:
        """The keys the user wrote, with their values (defaults left out)."""
        return {key: getattr(self, key) for key in self.model_fields_set if key in type(self).model_fields}

    def extra(self) -> dict[str, Any]:
        """Keys outside the schema; only pass-through sections keep any."""
        return dict(self.__pydantic_extra__ or {})


class PassThroughSection(Section):
    """A section whose extra keys go on to a library call (torch.optim, Lightning, a logger).

    Extra keys are kept, but each subclass checks them against the signature of the call they feed,
    so a typo still fails at load time rather than after the data is downloaded.
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=(), validate_default=True)
