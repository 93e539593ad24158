"""Positional and temporal embeddings, in DREEM 0.5's parameter layout, read one of two ways.

`corrected` (models trained here) maps distinct boxes and frames to distinct vectors. `dreem-0.5` reads
the same tables as DREEM 0.5 did, defects included, because checkpoints DREEM trained were fitted to
that reading: its learned temporal embedding gives every frame after the first the last row (frame ranks
are multiplied by the table length, not normalised), its fixed positional embedding with `normalize`
divides each box by itself (a constant), and its box normalisation divides y by the frame's width and x
by its height.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

from dreem_trainer.config.model import EmbeddingSemantics, PositionalEmbeddingConfig, TemporalEmbeddingConfig

COORDINATES = 4
"""y1, x1, y2, x2 (or centre y, centre x, height, width when not over boxes)."""


class MLP(nn.Module):
    """`num_layers` linear layers, ReLU and dropout between them; none at all is the identity."""

    def __init__(self, in_dims: int, hidden_dims: int, out_dims: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        widths = [in_dims, *[hidden_dims] * (num_layers - 1), out_dims] if num_layers else []
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(widths))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = self.dropout(torch.relu(x))
        return x


def table_bins(values: torch.Tensor, rows: int, semantics: EmbeddingSemantics) -> tuple[torch.Tensor, ...]:
    """Rows below and above each value and the weight of the upper one, for reading a table by interpolation.

    corrected: values in [0, 1] span the table from its first row to its last. dreem-0.5: a value v sits at
    v * rows, clamped to the last row, and values below 0 extrapolate from the first two rows.
    """
    if semantics == "dreem-0.5":
        scaled = values * rows
        low = scaled.clamp(0, rows - 1).long()
    else:
        scaled = values.clamp(0, 1) * (rows - 1)
        low = scaled.floor().long().clamp(max=max(rows - 2, 0))
    high = (low + 1).clamp(max=rows - 1)
    return low, high, scaled - low.to(scaled.dtype)


def sine_blocks(values: torch.Tensor, dims: int, temperature: float) -> torch.Tensor:
    """(...,) -> (..., dims): sines at dims/2 frequencies temperature**(-2k/dims), then cosines at the same."""
    exponents = 2 * torch.arange(dims // 2, device=values.device, dtype=torch.float32) / dims
    angles = values.float()[..., None] / temperature**exponents
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def sinusoid(values: torch.Tensor, dims: int, temperature: float) -> torch.Tensor:
    """(...,) -> (..., dims): sin on even channels, cos on odd ones, wavelengths up to 2*pi*temperature."""
    index = torch.arange(dims, device=values.device, dtype=torch.float32)
    frequencies = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / dims)
    angles = values.float()[..., None] / frequencies
    return torch.where(index.long() % 2 == 0, angles.sin(), angles.cos())


def normalised_boxes(boxes: torch.Tensor, image_size: torch.Tensor, semantics: EmbeddingSemantics) -> torch.Tensor:
    """(N, A, 4) y1, x1, y2, x2 pixels -> fractions of the frame (dreem-0.5: y over width, x over height)."""
    height, width = image_size.to(boxes.device, torch.float32).unbind()
    boxes = boxes.float()
    if semantics == "dreem-0.5":
        return torch.nan_to_num(boxes / torch.stack([width, height, width, height]), nan=-1.0)
    return torch.nan_to_num(boxes / torch.stack([height, width, height, width]), nan=0.0)


class PositionalEmbedding(nn.Module):
    """Embeds each instance's boxes: (N, A, 4) y1, x1, y2, x2 pixels -> (N, d_model).

    Learned: one table of 4 * emb_num * n_points rows of d_model / (4 * n_points) columns; row
    bin * 4 * n_points + point * 4 + coordinate holds that coordinate's value at that bin.
    Fixed: each coordinate gets d_model / 4 sinusoids. An optional MLP maps the concatenation to d_model.
    """

    def __init__(self, config: PositionalEmbeddingConfig, d_model: int, semantics: EmbeddingSemantics) -> None:
        super().__init__()
        self.config = config
        self.semantics = semantics
        self.d_model = d_model
        points = config.n_points
        if config.mode == "learned":
            self.columns = d_model // (COORDINATES * points)
            self.lookup = nn.Embedding(config.emb_num * COORDINATES * points, self.columns)
            width = self.columns * COORDINATES * points
        else:
            width = d_model * points
        self.scale = config.scale if config.scale is not None else 2 * math.pi
        mlp = config.mlp_cfg
        self.mlp: nn.Module = (
            MLP(width, mlp.hidden_dims, d_model, mlp.num_layers, mlp.dropout)
            if mlp is not None and config.projects()
            else nn.Identity()
        )

    def forward(self, boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
        count, anchors = boxes.shape[:2]
        if self.config.n_points == 1 and anchors > 1:
            boxes = boxes.nanmean(dim=1, keepdim=True)
        elif self.config.n_points != anchors:
            raise ValueError(
                f"model.embedding_meta.pos.n_points is {self.config.n_points} but crops have {anchors} anchors"
            )
        coords = normalised_boxes(boxes, image_size, self.semantics)
        embedded = self._learned(coords) if self.config.mode == "learned" else self._fixed(coords)
        return self.mlp(embedded.reshape(count, -1))  # type: ignore[no-any-return]

    def _learned(self, coords: torch.Tensor) -> torch.Tensor:
        if not self.config.over_boxes:
            starts, ends = coords[..., :2], coords[..., 2:]
            coords = torch.cat([(starts + ends) / 2, ends - starts], dim=-1)
        points = coords.shape[1]
        table = self.lookup.weight.view(self.config.emb_num, points, COORDINATES, self.columns)
        low, high, weight = table_bins(coords, self.config.emb_num, self.semantics)
        point = torch.arange(points, device=coords.device)[None, :, None]
        coordinate = torch.arange(COORDINATES, device=coords.device)[None, None, :]
        upper, lower = table[high, point, coordinate], table[low, point, coordinate]
        return weight[..., None] * upper + (1 - weight[..., None]) * lower

    def _fixed(self, coords: torch.Tensor) -> torch.Tensor:
        if self.config.normalize:
            if self.semantics == "dreem-0.5":
                # DREEM divides every box by the last anchor's box: a constant for one anchor.
                coords = coords / (coords[:, -1:, :] + 1e-6)
            coords = coords * self.scale
        return sine_blocks(coords, self.d_model // COORDINATES, self.config.temperature)


def frame_ranks(offsets: torch.Tensor) -> torch.Tensor:
    """Each instance's frame as its rank among the distinct frames present (0, 1, ...), as DREEM numbers them."""
    ranks: torch.Tensor = torch.unique(offsets, return_inverse=True)[1]
    return ranks


class TemporalEmbedding(nn.Module):
    """Embeds each instance's frame: (N,) frame offsets -> (N, d_model).

    corrected: offsets from the earliest frame; a learned table spans them from its first row (earliest)
    to its last (latest). dreem-0.5: frame ranks, read as DREEM 0.5 reads them.
    """

    def __init__(self, config: TemporalEmbeddingConfig, d_model: int, semantics: EmbeddingSemantics) -> None:
        super().__init__()
        self.config = config
        self.semantics = semantics
        self.d_model = d_model
        if config.mode == "learned":
            self.lookup = nn.Embedding(config.emb_num, d_model)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        if self.semantics == "dreem-0.5":
            times = frame_ranks(offsets).float()
        else:
            times = (offsets - offsets.min()).float() if offsets.numel() else offsets.float()
        if self.config.mode == "fixed":
            return sinusoid(times, self.d_model, self.config.temperature)
        if self.semantics == "corrected":
            times = times / times.max().clamp(min=1)
        low, high, weight = table_bins(times, self.config.emb_num, self.semantics)
        table = self.lookup.weight
        return weight[:, None] * table[high] + (1 - weight[:, None]) * table[low]
