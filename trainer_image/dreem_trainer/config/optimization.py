"""The `loss`, `optimizer` and `scheduler` sections."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import LibraryCallSection, Section
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


class OptimizerConfig(LibraryCallSection):
    """Extra keys are passed to the torch.optim class named by `name`."""

    own_keys: ClassVar[frozenset[str]] = frozenset({"name"})
    default_class: ClassVar[str | None] = "Adam"
    default_class_only: ClassVar[frozenset[str]] = frozenset({"betas", "eps", "weight_decay"})
    """The documented Adam defaults: SGD given weight_decay 0.01 unasked would be regularised far more than
    PyTorch or DREEM does it (neither adds it), and Adagrad's eps is 1e-10."""

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

    @property
    def signature(self) -> CallSignature:
        return library_names().optimizers[self.name]


class SchedulerConfig(LibraryCallSection):
    """Extra keys are passed to the torch.optim.lr_scheduler class named by `name`."""

    own_keys: ClassVar[frozenset[str]] = frozenset({"name", "monitor"})
    """`monitor` is Lightning's, not the scheduler's."""
    default_class: ClassVar[str | None] = "ReduceLROnPlateau"
    default_class_only: ClassVar[frozenset[str]] = frozenset(
        {"mode", "factor", "patience", "threshold", "threshold_mode"}
    )

    name: str = Field(
        "ReduceLROnPlateau",
        description="Scheduler name (must match PyTorch scheduler class name exactly, case-sensitive). "
        "See torch.optim.lr_scheduler for available options.",
    )
    mode: str = Field(
        "min",
        description='One of "min" or "max". In min mode, LR reduces when monitored quantity stops decreasing. '
        "(Another scheduler with a mode, such as CyclicLR, takes its own values.)",
    )
    factor: float = Field(
        0.5, gt=0, le=1, description="Factor by which LR is reduced: new_lr = lr * factor (default: 0.5)."
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
    def _plateau_values(self) -> SchedulerConfig:
        """ReduceLROnPlateau's own rules for its keys; another class checks the values it is given itself."""
        if self.name != self.default_class:
            return self
        if self.mode not in ("min", "max"):
            raise key_error("mode", 'ReduceLROnPlateau\'s mode is "min" or "max"', self.mode)
        if self.factor >= 1:
            raise key_error("factor", "ReduceLROnPlateau's factor must be below 1", self.factor)
        return self

    @property
    def signature(self) -> CallSignature:
        return library_names().schedulers[self.name]
