"""Base classes shared by every section of the training configuration.

The spec says "for defaults, leave fields blank or omit the key" and "use `null` to disable features".
YAML reads a blank value as null, so the two rules meet here: a null on a key whose type cannot be null
means "use the default", while a null on a key that may be null (a whole `logging` section, `ckpt_path`)
keeps its meaning of "off".
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from dreem_trainer.config.issues import did_you_mean, key_error
from dreem_trainer.config.library_names import CallSignature


def _accepts_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepts_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_none(arg) for arg in typing.get_args(annotation))
    return False


def _leaves(annotation: Any) -> set[Any]:
    """The types an annotation allows at its top level (unions opened, Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaves(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return {leaf for arg in typing.get_args(annotation) for leaf in _leaves(arg)}
    return {annotation}


def _a_number_only(annotation: Any) -> bool:
    """Whether the key takes a number and not a boolean: YAML's `true` would otherwise pass as 1."""
    leaves = _leaves(annotation)
    return bool(leaves & {int, float}) and bool not in leaves and Any not in leaves


class Section(BaseModel):
    """A closed section: an unknown key is an error, reported with a did-you-mean."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                field = cls.model_fields.get(key)
                if isinstance(value, bool) and field is not None and _a_number_only(field.annotation):
                    raise key_error(key, "a number, not true or false", value)
        return data

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
    """A section whose extra keys go on to a library (timm, torch.optim, Lightning, a logger): kept as written."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), validate_default=True)


class LibraryCallSection(PassThroughSection):
    """A section whose keys are the keyword arguments of one library call (torch.optim.Adam, lightning.Trainer).

    Every key but `own_keys` goes to the call, extra keys included, and each is checked against the call's
    signature at load time, so a typo fails before any data is downloaded. The documented keys are those of
    the default class (Adam, ReduceLROnPlateau): another class gets their defaults only where it has a
    parameter of that name, while a key the user wrote that the class lacks is an error.
    """

    own_keys: ClassVar[frozenset[str]] = frozenset()
    """Keys dreem reads itself (which class to call, what to monitor) rather than pass on."""
    default_class: ClassVar[str | None] = None
    """The class the documented keys describe."""
    default_class_only: ClassVar[frozenset[str]] = frozenset()
    """Documented keys whose defaults mean something for the default class only: another class that takes a
    parameter of that name means something else by it (CyclicLR's `mode`, ConstantLR's `factor`), so it
    gets the key only when the user writes it, and torch's default otherwise."""

    def _passes_default(self, key: str) -> bool:
        """Whether the documented default of `key`, left out by the user, goes to the call."""
        return key not in self.default_class_only or getattr(self, "name", None) == self.default_class

    @property
    def signature(self) -> CallSignature | None:
        """The call and the keyword arguments it takes; None when the section calls nothing (no logger)."""
        raise NotImplementedError

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments for the call; raises a key error for a key the user wrote that it lacks."""
        signature = self.signature
        extra = self.extra()
        explicit = self.model_fields_set | set(extra)
        kwargs: dict[str, Any] = {}
        for key in [*type(self).model_fields, *extra]:
            if key in self.own_keys:
                continue
            if key not in explicit and not self._passes_default(key):
                continue
            if signature is not None and key not in signature.params:
                if key not in explicit:
                    continue
                if signature.unknown({key}):
                    message = f"{signature.callee} takes no argument '{key}'{did_you_mean(key, signature.params)}"
                    raise key_error(key, message, getattr(self, key))
            kwargs[key] = getattr(self, key)
        return kwargs

    @model_validator(mode="after")
    def _kwargs_fit_the_call(self) -> LibraryCallSection:
        self.kwargs()
        return self

    @model_serializer(mode="wrap")
    def _applicable_only(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        """Leave out the documented keys the chosen class does not take, so that a resolved configuration
        (`dreem config show`, checkpoints) validates again as it is."""
        data: dict[str, Any] = handler(self)
        signature = self.signature
        if signature is None:
            return data
        fields = type(self).model_fields
        return {
            key: value
            for key, value in data.items()
            if key not in fields
            or key in self.own_keys
            or (key in signature.params and (key in self.model_fields_set or self._passes_default(key)))
        }
