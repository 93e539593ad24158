"""`GlobalTrackingTransformer`: crops and boxes of a clip in, association matrices out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dreem_trainer.config.model import ModelConfig
from dreem_trainer.models.encoder import VisualEncoder
from dreem_trainer.models.transformer import Transformer


@dataclass(frozen=True)
class AssociationOutput:
    matrices: list[torch.Tensor]
    """One (Q, R) logit matrix per returned decoder layer, the last layer last."""
    embeddings: dict[str, torch.Tensor] | None = None
    """Per-instance `pos` and `temp` embeddings (R, d_model), when `return_embedding` is set."""


class GlobalTrackingTransformer(nn.Module):
    """Visual features plus spatio-temporal embeddings, a transformer over all instances of a clip, and an
    attention head that scores each query instance against every reference instance.

    Its parameters are named as in DREEM 0.5's GlobalTrackingTransformer, so a DREEM checkpoint's weights
    load into it as they are.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.visual_encoder = VisualEncoder(config.encoder_cfg, config.d_model)
        self.transformer = Transformer(config)

    def forward(
        self,
        crops: torch.Tensor,
        boxes: torch.Tensor,
        offsets: torch.Tensor,
        image_size: torch.Tensor,
        query_index: torch.Tensor | None = None,
    ) -> AssociationOutput:
        return self.associate(self.visual_encoder(crops), boxes, offsets, image_size, query_index)

    def associate(
        self,
        features: torch.Tensor,
        boxes: torch.Tensor,
        offsets: torch.Tensor,
        image_size: torch.Tensor,
        query_index: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> AssociationOutput:
        """Associate instances whose visual features are already computed (the tracker reuses them).

        `boxes` (N, A, 4) y1, x1, y2, x2 pixels; `offsets` (N,) frame numbers relative to any fixed frame;
        `query_index` picks the query instances (all when None). Every query is also a reference.
        `positions` (N, d_model): the instances' positional embeddings when already computed
        (`transformer.embed_positions`, which the tracker keeps per instance); `boxes` are then not read.
        Boxes, offsets and the image size may stay on the CPU: they follow the features' device.
        """
        device = features.device
        if positions is not None:
            positions = positions.to(device)
        else:
            boxes = boxes.to(device)
        embeddings = self.transformer.embed(boxes, offsets.to(device), image_size.to(device), positions=positions)
        combined = features.new_zeros(features.shape)
        for embedding in embeddings.values():
            combined = combined + embedding
        # The mean of the two, an absent one counting as zeros: DREEM's combination.
        if query_index is not None:
            query_index = query_index.to(device)
        matrices = self.transformer(features, combined / 2, query_index)
        return AssociationOutput(matrices, embeddings if self.config.return_embedding else None)
