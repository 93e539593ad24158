"""Visual encoder: a timm or torchvision backbone from crops to one feature vector per instance."""

from __future__ import annotations

import socket
from typing import Any

import torch
from torch import nn

from dreem_trainer.config.model import EncoderConfig
from dreem_trainer.contract import UserError


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be had (offline cluster, no cache): the user must change
    `model.encoder_cfg.pretrained` or fill the cache, so a restart would fail the same way."""


HUB_HOST = ("huggingface.co", 443)


def _reachable(address: tuple[str, int], timeout: float = 5.0) -> bool:
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError:
        return False
    return True


def _timm_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    import huggingface_hub.constants as hub
    import timm

    def create() -> Any:
        return timm.create_model(
            config.model_name, pretrained=config.pretrained, in_chans=config.in_chans, num_classes=0, **config.extra()
        )

    if not config.pretrained:
        model = create()
        return model, int(model.num_features)
    # Weights come from the local cache when they are there. Otherwise the hub client retries for about
    # a minute before giving up, so an unreachable hub is detected first and reported at once.
    offline = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = True
    try:
        model = create()
        return model, int(model.num_features)
    except Exception:
        if offline or not _reachable(HUB_HOST):
            raise
    finally:
        hub.HF_HUB_OFFLINE = offline
    model = create()
    return model, int(model.num_features)


def _torchvision_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    import torchvision

    weights = "DEFAULT" if config.pretrained else None
    model: Any = torchvision.models.get_model(config.model_name, weights=weights, **config.extra())
    if config.in_chans != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(config.in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    width = int(model.fc.in_features)
    model.fc = nn.Identity()
    return model, width


class VisualEncoder(nn.Module):
    """Backbone, global pooling and a projection to `d_model`."""

    def __init__(self, config: EncoderConfig, d_model: int) -> None:
        super().__init__()
        try:
            backbone, width = _timm_backbone(config) if config.backend == "timm" else _torchvision_backbone(config)
        except Exception as error:
            if not config.pretrained:
                raise
            raise WeightsUnavailableError(
                f"model.encoder_cfg.pretrained: weights for {config.backend} model {config.model_name!r} could not "
                f"be loaded ({type(error).__name__}: {error}). Set pretrained: false, or put the weights in the "
                "local cache (HF_HOME / TORCH_HOME) before training offline."
            ) from error
        # channels_last runs convolutions about 1.4x faster on CPU (measured in bench/), and no slower on GPU.
        self.backbone = backbone.to(memory_format=torch.channels_last)
        self.projection = nn.Linear(width, d_model)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) crops, uint8 or float in [0, 1] -> (N, d_model) features."""
        if crops.shape[0] == 0:
            return self.projection.weight.new_zeros((0, self.projection.out_features))
        if crops.dtype == torch.uint8:
            crops = crops.to(self.projection.weight.dtype).div_(255.0)
        features = self.backbone(crops.contiguous(memory_format=torch.channels_last))
        return self.projection(features.flatten(1))  # type: ignore[no-any-return]
