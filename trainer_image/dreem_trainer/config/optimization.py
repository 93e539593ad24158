"""The `loss`, `optimizer` and `scheduler` sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from dreem_trainer.config.base import PassThroughSection, Section
from dreem_trainer.config.issues import did_you_mean, key_error
from dreem_trainer.config.library_names import CallSignature, library_names


class LossConfig(Section):
    neg_unmatched: bool = Field(False, description="Whether to set unmatched objects to background (default: false).")
    epsilon: float = Field(
        1e-4, gt=0, description="Small value for numerical precision to prevent division by zero (default: 1e-4)."
    )
    asso_weight: float = Field(1.0, ge=0, description="Weight for association loss (default: 1.0).")


def _lookup(kind: str, name: str, table: dict[str, CallSignature]) -> CallSignature:
    if name not in table:
        raise ValueError(f"not a {kind}{did_you_mean(name, set(table))}")
    return table[name]


def drop_inapplicable(data: dict[str, Any], signature: CallSignature, documented_defaults: set[str]) -> dict[str, Any]:
    """Leave out the default class's documented keys that the chosen class does not take, so that a
    resolved configuration (`dreem config show`, checkpoints) validates again as it is."""
    return {key: value for key, value in data.items() if key not in documented_defaults or key in signature.params}


def library_kwargs(
    section: Section, signature: CallSignature, documented_defaults: set[str], owner: str
) -> dict[str, Any]:
    """The keyword arguments a section passes to its library call.

    Documented defaults belong to the default class (Adam, ReduceLROnPlateau); another class gets
    them only where its signature has a parameter of that name, while a key the user typed that
    the class lacks is an error.
    """
    explicit = set(section.model_fields_set) | set(section.extra())
    kwargs: dict[str, Any] = {}
    for key in [*type(section).model_fields, *section.extra()]:
        if key == "name":
            continue
        if key in explicit:
            unknown = signature.unknown({key})
            if unknown:
                raise key_error(
                    key,
                    f"{owner} takes no argument '{key}'{did_you_mean(key, signature.params)}",
                    getattr(section, key),
                )
        elif key not in documented_defaults or key not in signature.params:
            continue
        kwargs[key] = getattr(section, key)
    return kwargs


ADAM_KEYS = {"lr", "betas", "eps", "weight_decay"}
PLATEAU_KEYS = {"mode", "factor", "patience", "threshold", "threshold_mode"}


class OptimizerConfig(PassThroughSection):
    """Extra keys are passed to the torch.optim class named by `name`."""

    name: str = Field(
        "Adam",
        description="Optimizer name (must match PyTorch optimizer class name exactly, case-sensitive). "
        "See torch.optim for available options.",
    )
    lr: float = Field(1e-4, gt=0, description="Learning rate (default: 0.0001).")
    betas: tuple[float, float] = Field(
        (0.9, 0.999),
        description="Coefficients for computing running averages of gradient and its square (default: [0.9, 0.999]).",
    )
    eps: float = Field(1e-8, gt=0, description="Term added to denominator for numerical stability (default: 1e-8).")
    weight_decay: float = Field(0.01, ge=0, description="L2 penalty (default: 0.01).")

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        _lookup("torch.optim optimizer", name, library_names().optimizers)
        return name

    @model_validator(mode="after")
    def _kwargs_fit(self) -> OptimizerConfig:
        self.kwargs()
        return self

    @model_serializer(mode="wrap")
    def _applicable_only(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        return drop_inapplicable(handler(self), library_names().optimizers[self.name], ADAM_KEYS)

    def kwargs(self) -> dict[str, Any]:
        signature = library_names().optimizers[self.name]
        return library_kwargs(self, signature, ADAM_KEYS, f"torch.optim.{self.name}")


class SchedulerConfig(PassThroughSection):
    """Extra keys are passed to the torch.optim.lr_scheduler class named by `name`."""

    name: str = Field(
        "ReduceLROnPlateau",
        description="Scheduler name (must match PyTorch scheduler class name exactly, case-sensitive). "
        "See torch.optim.lr_scheduler for available options.",
    )
    mode: Literal["min", "max"] = Field(
        "min",
        description='One of "min" or "max". In min mode, LR reduces when monitored quantity stops decreasing.',
    )
    factor: float = Field(
        0.5, gt=0, lt=1, description="Factor by which LR is reduced: new_lr = lr * factor (default: 0.5)."
    )
    patience: int = Field(5, ge=0, description="Number of epochs with no improvement before reducing LR (default: 5).")
    threshold: float = Field(
        1e-3, ge=0, description="Threshold for measuring new optimum to focus on significant changes (default: 0.001)."
    )
    threshold_mode: Literal["rel", "abs"] = Field(
        "rel", description='One of "rel" or "abs". Relative or absolute threshold mode (default: "rel").'
    )
    monitor: str = Field("val_loss", description="Metric a ReduceLROnPlateau scheduler watches (default: val_loss).")

    @field_validator("name")
    @classmethod
    def _known_scheduler(cls, name: str) -> str:
        _lookup("torch.optim.lr_scheduler scheduler", name, library_names().schedulers)
        return name

    @model_validator(mode="after")
    def _kwargs_fit(self) -> SchedulerConfig:
        self.kwargs()
        return self

    @model_serializer(mode="wrap")
    def _applicable_only(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict[str, Any]:
        return drop_inapplicable(handler(self), library_names().schedulers[self.name], PLATEAU_KEYS)

    def kwargs(self) -> dict[str, Any]:
        signature = library_names().schedulers[self.name]
        # `monitor` is Lightning's, not the scheduler's: keep it out of the call.
        probe = signature if "monitor" not in self.model_fields_set else _with_param(signature, "monitor")
        kwargs = library_kwargs(self, probe, PLATEAU_KEYS, f"torch.optim.lr_scheduler.{self.name}")
        kwargs.pop("monitor", None)
        return kwargs


def _with_param(signature: CallSignature, param: str) -> CallSignature:
    return CallSignature(params=signature.params | {param}, open=signature.open)
