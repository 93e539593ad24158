"""Transformer encoder/decoder over the instances of a clip, and the association head, as DREEM 0.5 computes them.

Every model, trained here or by DREEM, uses this one architecture, so DREEM's checkpoints load unchanged
and a model trained here with DREEM's configuration is DREEM's model. What differs from a textbook
transformer is DREEM's: the averaged positional and temporal embedding is added to the tokens again at
every layer and to the memory the decoder attends to; the decoder's queries are the raw visual features;
the feed-forward block is d_model wide; LayerNorms exist only with `norm`; and the association logits are
unscaled dot products of the projected queries and encoder outputs.

Written out rather than taken from torch.nn.Transformer because of those differences, a decoder without
self-attention and every decoder layer's output.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dreem_trainer.config.model import ModelConfig
from dreem_trainer.models.embeddings import MLP, PositionalEmbedding, TemporalEmbedding

Activation = Literal["relu", "gelu", "glu"]


def _norm(d_model: int, norm: bool) -> nn.Module:
    return nn.LayerNorm(d_model) if norm else nn.Identity()


class FeedForwardLayer(nn.Module):
    """A layer ending in linear2(dropout(activation(linear1(x)))), d_model wide (GLU halves twice as many units).

    The linear layers sit on the layer itself, where DREEM's checkpoints keep them.
    """

    def __init__(self, d_model: int, activation: Activation, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, 2 * d_model if activation == "glu" else d_model)
        self.activation: nn.Module = {"relu": nn.ReLU(), "gelu": nn.GELU(), "glu": nn.GLU()}[activation]
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_model, d_model)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # type: ignore[no-any-return]


class EncoderLayer(FeedForwardLayer):
    def __init__(self, d_model: int, nhead: int, activation: Activation, dropout: float, norm: bool) -> None:
        super().__init__(d_model, activation, dropout)
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm1, self.norm2 = _norm(d_model, norm), _norm(d_model, norm)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        x = x + embedding
        x = self.norm1(x + self.dropout1(self.self_attn(x, x, x, need_weights=False)[0]))
        return self.norm2(x + self.dropout2(self.feed_forward(x)))  # type: ignore[no-any-return]


class DecoderLayer(FeedForwardLayer):
    def __init__(
        self, d_model: int, nhead: int, activation: Activation, dropout: float, norm: bool, self_attention: bool
    ) -> None:
        super().__init__(d_model, activation, dropout)
        self.self_attn = (
            nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True) if self_attention else None
        )
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.norm1, self.norm2, self.norm3 = _norm(d_model, norm), _norm(d_model, norm), _norm(d_model, norm)
        self.dropout1, self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor, query_embedding: torch.Tensor, memory_embedding: torch.Tensor
    ) -> torch.Tensor:
        queries = queries + query_embedding
        memory = memory + memory_embedding
        if self.self_attn is not None:
            attended = self.self_attn(queries, queries, queries, need_weights=False)[0]
            queries = self.norm1(queries + self.dropout1(attended))
        attended = self.multihead_attn(queries, memory, memory, need_weights=False)[0]
        queries = self.norm2(queries + self.dropout2(attended))
        return self.norm3(queries + self.dropout3(self.feed_forward(queries)))  # type: ignore[no-any-return]


class Encoder(nn.Module):
    def __init__(self, layers: list[EncoderLayer], norm: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, embedding)
        return self.norm(x)  # type: ignore[no-any-return]


class Decoder(nn.Module):
    def __init__(self, layers: list[DecoderLayer], norm: nn.Module, return_intermediate: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor, query_embedding: torch.Tensor, memory_embedding: torch.Tensor
    ) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layers:
            queries = layer(queries, memory, query_embedding, memory_embedding)
            outputs.append(self.norm(queries))
        return outputs if self.return_intermediate else outputs[-1:]


class AttentionHead(nn.Module):
    """Scores every query instance against every reference instance: the association logits."""

    def __init__(self, d_model: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.q_proj = MLP(d_model, d_model, d_model, num_layers, dropout)
        self.k_proj = MLP(d_model, d_model, d_model, num_layers, dropout)

    def forward(self, queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """(B, Q, d), (B, R, d) -> (B, Q, R) logits."""
        logits: torch.Tensor = self.q_proj(queries) @ self.k_proj(references).transpose(-1, -2)
        return logits


class Transformer(nn.Module):
    """Embeddings, encoder, decoder and association head: visual features in, association logits out."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d_model, meta = config.d_model, config.embedding_meta
        pos, temp = meta.pos, meta.temp
        self.pos_emb = (
            PositionalEmbedding(pos, d_model, meta.semantics) if pos is not None and pos.mode is not None else None
        )
        self.temp_emb = (
            TemporalEmbedding(temp, d_model, meta.semantics) if temp is not None and temp.mode is not None else None
        )
        layer_args = (d_model, config.nhead, config.activation, config.dropout, config.norm)
        self.encoder = Encoder(
            [EncoderLayer(*layer_args) for _ in range(config.num_encoder_layers)], _norm(d_model, config.norm)
        )
        self.decoder = Decoder(
            [DecoderLayer(*layer_args, config.decoder_self_attn) for _ in range(config.num_decoder_layers)],
            _norm(d_model, config.norm),
            config.return_intermediate_dec,
        )
        self.attn_head = AttentionHead(d_model, config.num_layers_attn_head, config.dropout_attn_head)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def embed(
        self,
        boxes: torch.Tensor,
        offsets: torch.Tensor,
        image_size: torch.Tensor,
        positions: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Each instance's positional and temporal embedding (those switched on). `positions`, when given, are
        the positional embeddings already computed (`embed_positions`), and `boxes` are not read."""
        embeddings: dict[str, torch.Tensor] = {}
        if self.pos_emb is not None:
            embeddings["pos"] = positions if positions is not None else self.pos_emb(boxes, image_size)
        if self.temp_emb is not None:
            embeddings["temp"] = self.temp_emb(offsets)
        return embeddings

    def embed_positions(self, boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor | None:
        """(N, d_model) positional embeddings, None when the model has none.

        Each row depends on that instance's boxes and the frame size alone, so the tracker computes it once
        per instance and keeps it; the temporal embedding depends on the frames of the whole window (ranks,
        offsets from its first frame) and is computed anew with every window."""
        return None if self.pos_emb is None else self.pos_emb(boxes, image_size)

    def forward(
        self, features: torch.Tensor, embedding: torch.Tensor, query_index: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """(N, d) features and combined embeddings -> one (Q, N) logit matrix per returned decoder layer."""
        features, embedding = features.unsqueeze(0), embedding.unsqueeze(0)
        memory = self.encoder(features, embedding)
        if query_index is None:
            queries, query_embedding = features, embedding
        else:
            queries, query_embedding = features[:, query_index], embedding[:, query_index]
        decoded = self.decoder(queries, memory, query_embedding, embedding)
        return [self.attn_head(output, memory)[0] for output in decoded]
