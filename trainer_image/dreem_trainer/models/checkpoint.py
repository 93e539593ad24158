"""Reading a tracker back from a checkpoint, ours or DREEM's, without the training stack.

Ours (DreemModule) store the whole configuration as `hyper_parameters.config`; DREEM 0.5's (GTRRunner)
store only the model's as `hyper_parameters.model_cfg`. Both keep the network under the `model.` prefix
of `state_dict`, in the same parameter layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ValidationError

from dreem_trainer.config.loader import format_path
from dreem_trainer.config.model import ModelConfig, model_section_from_dreem
from dreem_trainer.contract import UserError
from dreem_trainer.models.gtr import GlobalTrackingTransformer

MODEL_PREFIX = "model."
LAYOUT_KEY = "dreem_model_layout"
LAYOUT = "dreem-0.5"
"""Written into our checkpoints: the parameter layout and math of DREEM 0.5's model. Checkpoints written
before dreem adopted it lack the key; their network computed something else and is refused."""

UNUSED_DREEM_PREFIXES = ("transformer.fourier_",)
"""DREEM builds Fourier-feature parameters that only its descriptor encoder and `use_fourier` read;
neither is supported here (the configuration refuses both), so their weights are left out."""

CheckpointKind = Literal["dreem", "dreem-0.5"]


@dataclass(frozen=True)
class Checkpoint:
    path: str
    kind: CheckpointKind
    """`dreem`: written here by DreemModule (resumable); `dreem-0.5`: written by DREEM 0.5.x's GTRRunner."""
    config: dict[str, Any]
    """A configuration to build on: ours whole; DREEM's as a model section (DREEM stores no other)."""
    weights: dict[str, torch.Tensor]
    """The network's state_dict, without the `model.` prefix."""

    @property
    def written_by_dreem(self) -> bool:
        return self.kind == "dreem-0.5"

    def model_config(self) -> ModelConfig:
        """The model section that rebuilds the network; no pretrained download, the weights are here.

        A model section that does not validate is a ValueError naming the checkpoint and the problems.
        """
        try:
            model = ModelConfig.model_validate(self.config.get("model", {}))
        except ValidationError as error:
            problems = "; ".join(f"model.{format_path(e['loc'])}: {e['msg']}" for e in error.errors())
            raise ValueError(f"{self.path}: its model configuration does not validate: {problems}") from None
        encoder = model.encoder_cfg.model_copy(update={"pretrained": False})
        return model.model_copy(update={"encoder_cfg": encoder, "ckpt_path": None})


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint of ours or of DREEM's; anything else is a ValueError naming the file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    stat = file.stat()
    return _read_once(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=2)
def _read_once(path: str, size: int, mtime_ns: int) -> Checkpoint:
    """`dreem track` reads the stored config, then the weights: one unpickling serves both."""
    try:
        # weights_only: a checkpoint may come from a model hub, and unpickling arbitrary objects runs code.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise ValueError(f"{path}: not a checkpoint torch can read ({type(error).__name__}: {error})") from None
    hyper = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not isinstance(hyper, dict) or "state_dict" not in state:
        raise ValueError(f"{path}: not a dreem or DREEM checkpoint (no hyper_parameters and state_dict)")
    weights = {k.removeprefix(MODEL_PREFIX): v for k, v in state["state_dict"].items() if k.startswith(MODEL_PREFIX)}
    if "config" in hyper:
        if state.get(LAYOUT_KEY) != LAYOUT:
            raise ValueError(
                f"{path}: written by an earlier dreem, whose transformer computed differently from DREEM's "
                "(LayerNorms, feed-forward width, embeddings); it cannot be loaded: train it again"
            )
        return Checkpoint(path, "dreem", dict(hyper["config"]), weights)
    if "model_cfg" in hyper:
        config = {"model": model_section_from_dreem(dict(hyper["model_cfg"]))}
        weights = {k: v for k, v in weights.items() if not k.startswith(UNUSED_DREEM_PREFIXES)}
        return Checkpoint(path, "dreem-0.5", config, weights)
    raise ValueError(f"{path}: not a dreem or DREEM checkpoint (no stored configuration)")


class CheckpointMismatch(UserError, ValueError):
    """A checkpoint whose weights do not fit the network its own configuration describes (edited, or cut
    short): reported to the user, never a traceback, wherever the weights are loaded."""


def load_weights(model: GlobalTrackingTransformer, checkpoint: Checkpoint) -> None:
    """The checkpoint's weights into `model`; every parameter must be there, and nothing else."""
    try:
        missing, unexpected = model.load_state_dict(checkpoint.weights, strict=False)
    except RuntimeError as error:  # shapes that differ
        raise CheckpointMismatch(
            f"{checkpoint.path}: its weights do not fit the model its configuration describes: {error}"
        ) from None
    if missing or unexpected:
        details = []
        if missing:
            details.append(f"missing {len(missing)} ({', '.join(missing[:3])}...)")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:3])}...)")
        raise CheckpointMismatch(
            f"{checkpoint.path}: its weights do not fit the model its configuration describes: {'; '.join(details)}"
        )


def load_model(path: str | Path) -> GlobalTrackingTransformer:
    """The network a checkpoint holds, in eval mode."""
    checkpoint = read_checkpoint(path)
    model = GlobalTrackingTransformer(checkpoint.model_config())
    load_weights(model, checkpoint)
    return model.eval()


def stored_config(path: str | Path) -> dict[str, Any]:
    """The configuration a checkpoint was trained with (for a DREEM checkpoint, its model section)."""
    return dict(read_checkpoint(path).config)
