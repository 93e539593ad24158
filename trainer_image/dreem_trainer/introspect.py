"""Reads from the installed libraries the names and keyword arguments the config schema checks against.

`python -m dreem_trainer.introspect` rewrites `dreem_trainer/config/library_names.json`; the test suite
compares that file with what this module reads, so the schema cannot silently drift from the libraries.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

LIBRARY_NAMES_FILE = Path(__file__).parent / "config" / "library_names.json"

# Logger arguments dreem fills itself; a user may still set them, so they are listed as accepted.
_LOGGER_ARGS_SET_BY_DREEM = ["save_dir", "name", "version"]


def _signature(target: Any, skip: tuple[str, ...] = ("self",)) -> dict[str, Any]:
    params = inspect.signature(target).parameters.values()
    names = sorted(p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in skip)
    return {"params": names, "open": any(p.kind == p.VAR_KEYWORD for p in params)}


def _subclasses_in(module: Any, base: type) -> dict[str, dict[str, Any]]:
    found = {}
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("_"):
            found[name] = _signature(obj.__init__, skip=("self", "params", "optimizer"))
    return dict(sorted(found.items()))


def collect_library_names() -> dict[str, Any]:
    import albumentations
    import lightning
    import lightning.pytorch as pl
    import timm
    import torch
    import torchvision
    from lightning.pytorch import callbacks, loggers

    augmentations = {}
    for name, obj in vars(albumentations).items():
        is_transform = inspect.isclass(obj) and issubclass(obj, albumentations.BasicTransform)
        if is_transform and not name.startswith("_") and obj.__module__.startswith("albumentations.augmentations"):
            augmentations[name] = _signature(obj.__init__)
    loggers_found = {}
    for name in ("CSVLogger", "TensorBoardLogger", "WandbLogger"):
        signature = _signature(getattr(loggers, name).__init__)
        signature["params"] = sorted(set(signature["params"]) | set(_LOGGER_ARGS_SET_BY_DREEM))
        loggers_found[name] = signature
    resnets = sorted(
        name
        for name in torchvision.models.list_models(module=torchvision.models)
        if name.startswith(("resnet", "resnext", "wide_resnet"))
    )
    return {
        "versions": {
            "torch": torch.__version__.split("+")[0],
            "lightning": lightning.__version__,
            "albumentations": albumentations.__version__,
            "timm": timm.__version__,
        },
        "optimizers": _subclasses_in(torch.optim, torch.optim.Optimizer),
        "schedulers": _subclasses_in(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
        | {"ReduceLROnPlateau": _signature(torch.optim.lr_scheduler.ReduceLROnPlateau.__init__, ("self", "optimizer"))},
        "augmentations": dict(sorted(augmentations.items())),
        "loggers": loggers_found,
        "trainer": _signature(pl.Trainer.__init__),
        "dataloader": _signature(torch.utils.data.DataLoader.__init__),
        "early_stopping": _signature(callbacks.EarlyStopping.__init__),
        "model_checkpoint": _signature(callbacks.ModelCheckpoint.__init__),
        "timm_models": sorted(timm.list_models()),
        "torchvision_resnets": resnets,
    }


def render(names: dict[str, Any]) -> str:
    return json.dumps(names, indent=1, sort_keys=False) + "\n"


def main() -> int:
    LIBRARY_NAMES_FILE.write_text(render(collect_library_names()))
    print(f"wrote {LIBRARY_NAMES_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
