"""Reading a trained tracker back from a checkpoint, without the training stack.

DreemModule stores the configuration as `hyper_parameters.config` and the network under the `model.`
prefix of `state_dict`; inference needs only those two, not Lightning.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from dreem_trainer.config import DreemConfig
from dreem_trainer.models.gtr import GlobalTrackingTransformer

MODEL_PREFIX = "model."


def _load(checkpoint: str | Path) -> dict[str, Any]:
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    stat = path.stat()
    return _load_once(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _load_once(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    """`dreem track` reads the stored config, then the weights: one unpickling serves both."""
    state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if not isinstance(state, dict) or "hyper_parameters" not in state or "config" not in state["hyper_parameters"]:
        raise ValueError(f"{path}: not a dreem checkpoint (no stored configuration)")
    return state


def stored_config(checkpoint: str | Path) -> dict[str, Any]:
    """The training configuration saved in a checkpoint."""
    return dict(_load(checkpoint)["hyper_parameters"]["config"])


def load_model(checkpoint: str | Path) -> GlobalTrackingTransformer:
    """The trained network in eval mode."""
    state = _load(checkpoint)
    config = DreemConfig.model_validate(state["hyper_parameters"]["config"])
    model = GlobalTrackingTransformer(
        config.model.model_copy(
            update={"encoder_cfg": config.model.encoder_cfg.model_copy(update={"pretrained": False})}
        )
    )
    weights = {k.removeprefix(MODEL_PREFIX): v for k, v in state["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    model.load_state_dict(weights)
    return model.eval()
