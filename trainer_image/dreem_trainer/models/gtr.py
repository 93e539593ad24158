"""`GlobalTrackingTransformer`: crops and boxes of a clip in, association matrices out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dreem_trainer.config.model import ModelConfig
from dreem_trainer.models.embeddings import PositionalEmbedding, TemporalEmbedding
from dreem_trainer.models.encoder import VisualEncoder
from dreem_trainer.models.transformer import AttentionHead, Transformer


@dataclass(frozen=True)
class AssociationOutput:
    matrices: list[torch.Tensor]
    """One (Q, R) logit matrix per returned decoder layer, the last layer last."""
    embeddings: dict[str, torch.Tensor] | None = None
    """Per-instance `pos` and `temp` embeddings (R, d_model), when `return_embedding` is set."""


class GlobalTrackingTransformer(nn.Module):
    """Visual features plus spatio-temporal embeddings, a transformer over all instances of a clip, and an
    attention head that scores each query instance against every reference instance."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d_model = config.d_model
        self.visual_encoder = VisualEncoder(config.encoder_cfg, d_model)
        pos, temp = config.embedding_meta.pos, config.embedding_meta.temp
        self.positional = PositionalEmbedding(pos, d_model) if pos is not None and pos.mode is not None else None
        self.temporal = TemporalEmbedding(temp, d_model) if temp is not None and temp.mode is not None else None
        self.transformer = Transformer(
            d_model,
            config.nhead,
            config.num_encoder_layers,
            config.num_decoder_layers,
            config.dropout,
            config.activation,
            config.norm,
            config.decoder_self_attn,
            config.return_intermediate_dec,
        )
        self.head = AttentionHead(d_model, config.num_layers_attn_head, config.dropout_attn_head)

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
    ) -> AssociationOutput:
        """Associate instances whose visual features are already computed (the tracker reuses them).

        `offsets` are frame offsets (N,); `query_index` picks the query instances (all when None).
        """
        embeddings: dict[str, torch.Tensor] = {}
        tokens = features
        if self.positional is not None:
            embeddings["pos"] = self.positional(boxes, image_size)
            tokens = tokens + embeddings["pos"]
        if self.temporal is not None:
            embeddings["temp"] = self.temporal(offsets)
            tokens = tokens + embeddings["temp"]
        memory = self.transformer.encode(tokens.unsqueeze(0))
        queries = tokens if query_index is None else tokens[query_index]
        decoded = self.transformer.decode(queries.unsqueeze(0), memory)
        matrices = [self.head(output, memory)[0] for output in decoded]
        return AssociationOutput(matrices, embeddings if self.config.return_embedding else None)
