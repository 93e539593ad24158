"""Names and keyword arguments of the library calls the configuration feeds.

`dreem_trainer.config` must load without torch (the operator validates `spec.config` with it), yet an
optimizer name that torch.optim lacks has to fail at load time. So the names are read once from the
installed libraries by `dreem_trainer.introspect` (`make library-names`) into `library_names.json`, and
a test fails when that file drifts from the libraries in the environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class CallSignature:
    """The keyword arguments a library callable accepts; `open` when it also takes **kwargs."""

    callee: str
    """The callable as error messages name it (`torch.optim.SGD`, `lightning.Trainer`)."""
    params: frozenset[str]
    open: bool

    def unknown(self, keys: set[str]) -> list[str]:
        return [] if self.open else sorted(keys - self.params)


@dataclass(frozen=True)
class LibraryNames:
    optimizers: dict[str, CallSignature]
    schedulers: dict[str, CallSignature]
    augmentations: dict[str, CallSignature]
    loggers: dict[str, CallSignature]
    trainer: CallSignature
    dataloader: CallSignature
    early_stopping: CallSignature
    model_checkpoint: CallSignature
    timm_models: frozenset[str]
    torchvision_resnets: frozenset[str]


def _signature(callee: str, raw: dict[str, object]) -> CallSignature:
    params = raw["params"]
    assert isinstance(params, list)
    return CallSignature(callee=callee, params=frozenset(str(p) for p in params), open=bool(raw["open"]))


def _signatures(raw: dict[str, dict[str, object]], module: str = "") -> dict[str, CallSignature]:
    return {name: _signature(f"{module}{name}", sig) for name, sig in raw.items()}


@cache
def library_names() -> LibraryNames:
    raw = json.loads(resources.files(__package__).joinpath("library_names.json").read_text())
    return LibraryNames(
        optimizers=_signatures(raw["optimizers"], "torch.optim."),
        schedulers=_signatures(raw["schedulers"], "torch.optim.lr_scheduler."),
        augmentations=_signatures(raw["augmentations"]),
        loggers=_signatures(raw["loggers"]),
        trainer=_signature("lightning.Trainer", raw["trainer"]),
        dataloader=_signature("torch.utils.data.DataLoader", raw["dataloader"]),
        early_stopping=_signature("EarlyStopping", raw["early_stopping"]),
        model_checkpoint=_signature("ModelCheckpoint", raw["model_checkpoint"]),
        timm_models=frozenset(raw["timm_models"]),
        torchvision_resnets=frozenset(raw["torchvision_resnets"]),
    )
