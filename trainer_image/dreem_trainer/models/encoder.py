"""Visual encoder: a timm or torchvision backbone from crops to one feature vector per instance."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from dreem_trainer.config.model import EncoderConfig


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be had (offline cluster, no cache): a configuration problem."""


def _timm_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    import timm

    # A hub that cannot be reached must fail in seconds, not hang the job.
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    model: Any = timm.create_model(
        config.model_name, pretrained=config.pretrained, in_chans=config.in_chans, num_classes=0, **config.extra()
    )
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
        """(N, C, H, W) crops -> (N, d_model) features."""
        if crops.shape[0] == 0:
            return crops.new_zeros((0, self.projection.out_features))
        features = self.backbone(crops.contiguous(memory_format=torch.channels_last))
        return self.projection(features.flatten(1))  # type: ignore[no-any-return]
