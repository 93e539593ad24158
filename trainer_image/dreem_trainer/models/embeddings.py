"""Positional and temporal embeddings. Every mode maps distinct inputs to distinct vectors.

The reference implementation had two dead embeddings (its learned temporal embedding sent every frame
after the first to one row; its normalised sinusoidal positions were constant). Here learned tables are
read with linear interpolation between rows, so nearby inputs differ too, and positions are normalised
by the frame size, never by themselves.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dreem_trainer.config.model import MLPConfig, PositionalEmbeddingConfig, TemporalEmbeddingConfig


def sinusoid(values: torch.Tensor, dims: int, temperature: float) -> torch.Tensor:
    """(...,) -> (..., dims): sin on even, cos on odd channels, wavelengths up to 2*pi*temperature."""
    index = torch.arange(dims, device=values.device, dtype=torch.float32)
    frequencies = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / dims)
    angles = values.float()[..., None] / frequencies
    return torch.where(index.long() % 2 == 0, angles.sin(), angles.cos())


class InterpolatedTable(nn.Module):
    """A learned lookup table read at real-valued positions in [0, 1], interpolating between rows."""

    def __init__(self, rows: int, dims: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(rows, dims) * 0.1)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        rows = self.table.shape[0]
        scaled = positions.clamp(0, 1) * (rows - 1)
        low = scaled.floor().long().clamp(max=max(rows - 2, 0))
        high = (low + 1).clamp(max=rows - 1)
        weight = (scaled - low.float()).unsqueeze(-1)
        return (1 - weight) * self.table[low] + weight * self.table[high]


def mlp(in_dims: int, out_dims: int, config: MLPConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dims
    for _ in range(config.num_layers):
        layers += [nn.Linear(width, config.hidden_dims), nn.ReLU(), nn.Dropout(config.dropout)]
        width = config.hidden_dims
    layers.append(nn.Linear(width, out_dims))
    return nn.Sequential(*layers)


class PositionalEmbedding(nn.Module):
    """Embeds each instance's boxes: (N, A, 4) y1, x1, y2, x2 pixels -> (N, d_model)."""

    def __init__(self, config: PositionalEmbeddingConfig, d_model: int) -> None:
        super().__init__()
        self.config = config
        self.d_model = d_model
        self.scale = config.scale if config.scale is not None else 2 * math.pi
        if config.mode == "learned":
            self.tables = nn.ModuleList(InterpolatedTable(config.emb_num, d_model // 4) for _ in range(4))
        self.mixer = (
            mlp(config.n_points * d_model, d_model, config.mlp_cfg) if config.n_points > 1 and config.mlp_cfg else None
        )

    def forward(self, boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
        count, anchors = boxes.shape[:2]
        if self.config.n_points == 1 and anchors > 1:
            boxes = boxes.nanmean(dim=1, keepdim=True)
        elif self.config.n_points not in (1, anchors):
            raise ValueError(
                f"model.embedding_meta.pos.n_points is {self.config.n_points} but crops have {anchors} anchors"
            )
        boxes = torch.nan_to_num(boxes.float())
        height, width = image_size.float()
        if self.config.mode == "fixed":
            centers = torch.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2], dim=-1)
            if self.config.normalize:
                centers = centers / torch.stack([height, width]) * self.scale
            half = self.d_model // 2
            embedded = torch.cat(
                [
                    sinusoid(centers[..., 0], half, self.config.temperature),
                    sinusoid(centers[..., 1], half, self.config.temperature),
                ],
                dim=-1,
            )
        else:
            size = torch.stack([height, width, height, width])
            if self.config.over_boxes:
                coords = boxes / size
            else:
                y1, x1, y2, x2 = boxes.unbind(-1)
                coords = torch.stack([(y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1], dim=-1) / size
            embedded = torch.cat([table(coords[..., i]) for i, table in enumerate(self.tables)], dim=-1)
        embedded = nn.functional.pad(embedded, (0, self.d_model - embedded.shape[-1]))
        if self.mixer is not None:
            return self.mixer(embedded.reshape(count, -1))  # type: ignore[no-any-return]
        return embedded[:, 0]


class TemporalEmbedding(nn.Module):
    """Embeds each instance's frame offset within the clip or window: (N,) -> (N, d_model)."""

    def __init__(self, config: TemporalEmbeddingConfig, d_model: int) -> None:
        super().__init__()
        self.config = config
        self.d_model = d_model
        if config.mode == "learned":
            self.table = InterpolatedTable(config.emb_num, d_model)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        if self.config.mode == "fixed":
            return sinusoid(offsets.float(), self.d_model, self.config.temperature)
        span = offsets.max().clamp(min=1).float()
        return self.table(offsets.float() / span)  # type: ignore[no-any-return]
