"""Transformer encoder/decoder over the instances of a clip, and the association head.

Written out rather than taken from torch.nn.Transformer because the spec needs what it lacks:
a GLU feed-forward, a decoder without self-attention, and every decoder layer's output.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "gelu", "glu"]


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int, activation: Activation, dropout: float) -> None:
        super().__init__()
        self.expand = nn.Linear(d_model, hidden * 2 if activation == "glu" else hidden)
        self.activation: nn.Module = {"relu": nn.ReLU(), "gelu": nn.GELU(), "glu": nn.GLU()}[activation]
        self.dropout = nn.Dropout(dropout)
        self.contract = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.contract(self.dropout(self.activation(self.expand(x))))  # type: ignore[no-any-return]


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, activation: Activation, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.feed_forward = FeedForward(d_model, 4 * d_model, activation, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout(self.attention(x, x, x, need_weights=False)[0]))
        return self.norm2(x + self.dropout(self.feed_forward(x)))  # type: ignore[no-any-return]


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nhead: int, activation: Activation, dropout: float, self_attention: bool) -> None:
        super().__init__()
        self.self_attention = (
            nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True) if self_attention else None
        )
        self.cross_attention = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.feed_forward = FeedForward(d_model, 4 * d_model, activation, dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        if self.self_attention is not None:
            attended = self.self_attention(queries, queries, queries, need_weights=False)[0]
            queries = self.norm1(queries + self.dropout(attended))
        attended = self.cross_attention(queries, memory, memory, need_weights=False)[0]
        queries = self.norm2(queries + self.dropout(attended))
        return self.norm3(queries + self.dropout(self.feed_forward(queries)))  # type: ignore[no-any-return]


class Transformer(nn.Module):
    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_encoder_layers: int,
        num_decoder_layers: int,
        dropout: float,
        activation: Activation,
        norm: bool,
        decoder_self_attn: bool,
        return_intermediate_dec: bool,
    ) -> None:
        super().__init__()
        self.encoder_layers = nn.ModuleList(
            EncoderLayer(d_model, nhead, activation, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderLayer(d_model, nhead, activation, dropout, decoder_self_attn) for _ in range(num_decoder_layers)
        )
        self.encoder_norm: nn.Module = nn.LayerNorm(d_model) if norm else nn.Identity()
        self.decoder_norm: nn.Module = nn.LayerNorm(d_model) if norm else nn.Identity()
        self.return_intermediate = return_intermediate_dec

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder_layers:
            x = layer(x)
        return self.encoder_norm(x)  # type: ignore[no-any-return]

    def decode(self, queries: torch.Tensor, memory: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for layer in self.decoder_layers:
            queries = layer(queries, memory)
            outputs.append(self.decoder_norm(queries))
        return outputs if self.return_intermediate else outputs[-1:]


class AttentionHead(nn.Module):
    """Scores every query instance against every reference instance: the association logits."""

    def __init__(self, d_model: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        self.query = self._projection(d_model, num_layers, dropout)
        self.key = self._projection(d_model, num_layers, dropout)
        self.scale = 1 / math.sqrt(d_model)

    @staticmethod
    def _projection(d_model: int, num_layers: int, dropout: float) -> nn.Sequential:
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers.append(nn.Linear(d_model, d_model))
            if index < num_layers - 1:
                layers += [nn.ReLU(), nn.Dropout(dropout)]
        return nn.Sequential(*layers)

    def forward(self, queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """(B, Q, d), (B, R, d) -> (B, Q, R) logits."""
        return self.query(queries) @ self.key(references).transpose(-1, -2) * self.scale  # type: ignore[no-any-return]
