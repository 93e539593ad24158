"""Reading what a checkpoint carries besides its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def stored_config(checkpoint: str | Path) -> dict[str, Any]:
    """The training configuration saved in a checkpoint by DreemModule."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=False, mmap=True)
    try:
        config = state["hyper_parameters"]["config"]
    except (KeyError, TypeError):
        raise ValueError(f"{checkpoint}: not a dreem checkpoint (no stored configuration)") from None
    return dict(config)
