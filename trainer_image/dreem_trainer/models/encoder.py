"""Visual encoder: a timm or torchvision backbone from crops to one unit-length feature vector per instance."""

from __future__ import annotations

import re
import sys
from types import ModuleType
from typing import Any

import torch
from torch import nn

from dreem_trainer.config.issues import ConfigError, ConfigIssue
from dreem_trainer.config.model import EncoderConfig
from dreem_trainer.contract import UserError
from dreem_trainer.models.hub import hub_reachable, retryable_download


class WeightsUnavailableError(UserError, RuntimeError):
    """Pretrained weights could not be had (offline cluster, no cache): the user must change
    `model.encoder_cfg.pretrained` or fill the cache, so a restart would fail the same way."""


def _import_timm() -> ModuleType:
    """timm, without the wandb that it imports, when installed, for its own training scripts' summaries
    (timm.utils.summary, which dreem never calls): that import alone is about half a second of every
    start-up. wandb stays importable; the W&B logger imports it when it is the one configured."""
    if "timm" in sys.modules or "wandb" in sys.modules:
        import timm

        return timm
    sys.modules["wandb"] = None  # type: ignore[assignment]  # `import wandb` raises ImportError; timm catches it
    try:
        import timm
    finally:
        if sys.modules.get("wandb") is None:  # the placeholder, not a wandb something else imported meanwhile
            sys.modules.pop("wandb", None)
    return timm


def _timm_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    import huggingface_hub.constants as hub

    timm = _import_timm()

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
        if offline or not hub_reachable():
            raise
    finally:
        hub.HF_HUB_OFFLINE = offline
    model = create()
    return model, int(model.num_features)


def _torchvision_backbone(config: EncoderConfig) -> tuple[nn.Module, int]:
    """The ResNet's children up to its pooling, in a Sequential: the layout of DREEM's torchvision encoder."""
    import torchvision

    weights = "DEFAULT" if config.pretrained else None
    model: Any = torchvision.models.get_model(config.model_name, weights=weights, **config.extra())
    if config.in_chans != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(config.in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    width = int(model.fc.in_features)
    return nn.Sequential(*list(model.children())[:-1]), width


INFERENCE_BATCH = 256
"""Crops per forward pass of the backbone when tracking: a clip of hundreds of cells would otherwise need the
activations of all its crops at once."""


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorms of `module` that keep running statistics: those a re-estimation resets and refills."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def batchnorms_in(graph_module: torch.fx.GraphModule) -> int:
    """BatchNorms a traced network still computes: as modules, or traced through into batch_norm calls."""

    def computes_batchnorm(node: torch.fx.Node) -> bool:
        if node.op == "call_function":
            return node.target is nn.functional.batch_norm
        return node.op == "call_module" and isinstance(
            graph_module.get_submodule(str(node.target)), nn.modules.batchnorm._BatchNorm
        )

    return sum(computes_batchnorm(node) for node in graph_module.graph.nodes)


def _unknown_argument(config: EncoderConfig, error: TypeError) -> ConfigIssue:
    """The section's extra key that the backbone's constructor refused, named with the constructor's words."""
    refused = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    extra = config.extra()
    if refused is not None and refused.group(1) in extra:
        key = refused.group(1)
        message = f"{config.backend} model {config.model_name!r} takes no argument {key!r}"
        return ConfigIssue(f"model.encoder_cfg.{key}", message, extra[key])
    return ConfigIssue("model.encoder_cfg", f"{config.backend} model {config.model_name!r}: {error}", has_value=False)


class VisualEncoder(nn.Module):
    """Backbone, global pooling, a projection to `d_model` and L2 normalisation, as in DREEM.

    Unit-length features keep the transformer's input on one scale whatever the crops look like.
    """

    def __init__(self, config: EncoderConfig, d_model: int) -> None:
        super().__init__()
        try:
            backbone, width = _timm_backbone(config) if config.backend == "timm" else _torchvision_backbone(config)
        except TypeError as error:  # a key of the section the backbone's constructor does not take
            raise ConfigError([_unknown_argument(config, error)]) from None
        except Exception as error:
            if not config.pretrained or retryable_download(error):
                raise  # a later try may succeed: the operator restarts the job
            raise WeightsUnavailableError(
                f"model.encoder_cfg.pretrained: weights for {config.backend} model {config.model_name!r} could not "
                f"be loaded ({type(error).__name__}: {error}). Set pretrained: false, or put the weights in the "
                "local cache (HF_HOME / TORCH_HOME) before training offline."
            ) from error
        # channels_last runs convolutions about 1.4x faster on CPU (measured in bench/), and no slower on GPU.
        self.feature_extractor = backbone.to(memory_format=torch.channels_last)
        self.out_layer = nn.Linear(width, d_model)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) crops, uint8 or float in [0, 1], on any device -> (N, d_model) features on the encoder's.

        Without gradients (tracking) the crops go through in batches of INFERENCE_BATCH, so a clip of
        many instances does not need its whole activation memory at once.
        """
        weight = self.out_layer.weight
        if crops.shape[0] == 0:
            return weight.new_zeros((0, self.out_layer.out_features))
        if torch.is_grad_enabled() or crops.shape[0] <= INFERENCE_BATCH:
            return self._encode(crops.to(weight.device, non_blocking=True))
        return torch.cat(
            [self._encode(batch.to(weight.device, non_blocking=True)) for batch in torch.split(crops, INFERENCE_BATCH)]
        )

    def fold_batchnorm(self) -> int:
        """For inference only: fold each BatchNorm into the convolution before it. In eval mode a BatchNorm
        is a fixed per-channel scale and shift, which the convolution's weights and bias can carry; the
        backbone then skips one pass over every activation (measured on CPU: resnet18 on 64 crops of 128 px
        9% faster; outputs equal to about 1e-6 of their scale). Returns how many BatchNorms are left unfolded:
        torch.fx folds a BatchNorm2d that directly follows a Conv2d, not timm's BatchNormAct2d (efficientnet,
        densenet, regnet), which it traces into a plain batch_norm; a backbone with nothing folded, or that
        torch.fx cannot trace, stays as it was. A folded encoder is for inference only: its running
        statistics are gone into the weights, so training it again starts from a network without BatchNorm."""
        from torch.fx.experimental.optimization import fuse
        from torch.fx.proxy import TraceError

        if self.training:
            raise RuntimeError("fold_batchnorm: the encoder is in training mode; fold only a network in eval mode")
        before = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.feature_extractor.modules())
        try:
            folded = fuse(self.feature_extractor)
        except (TraceError, NotImplementedError, RuntimeError, TypeError):
            return before
        left = batchnorms_in(folded) if isinstance(folded, torch.fx.GraphModule) else before
        if left < before:
            self.feature_extractor = folded.to(memory_format=torch.channels_last)
        return min(left, before)

    def _encode(self, crops: torch.Tensor) -> torch.Tensor:
        if crops.dtype == torch.uint8:
            crops = crops.to(self.out_layer.weight.dtype).div_(255.0)
        if crops.shape[1] == 1:
            crops = crops.expand(-1, 3, -1, -1)
        features = self.feature_extractor(crops.contiguous(memory_format=torch.channels_last))
        return nn.functional.normalize(self.out_layer(features.flatten(1)))
