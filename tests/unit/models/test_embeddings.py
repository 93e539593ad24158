"""Every embedding mode separates distinct positions and distinct frames (the reference's two did not)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dreem_trainer.config.model import PositionalEmbeddingConfig, TemporalEmbeddingConfig
from dreem_trainer.models.embeddings import PositionalEmbedding, TemporalEmbedding

IMAGE = torch.tensor([1024, 1024])


def boxes_at(centres: list[tuple[float, float]], size: float = 64.0, anchors: int = 1) -> torch.Tensor:
    rows = [[y - size / 2, x - size / 2, y + size / 2, x + size / 2] for y, x in centres]
    return torch.tensor(rows, dtype=torch.float32)[:, None, :].repeat(1, anchors, 1)


def pairwise_distinct(embedded: torch.Tensor) -> bool:
    distances = torch.cdist(embedded, embedded)
    off_diagonal = distances[~torch.eye(len(embedded), dtype=torch.bool)]
    return bool((off_diagonal > 1e-4).all())


POSITIONAL_MODES: list[dict[str, Any]] = [
    {"mode": "fixed", "normalize": True},
    {"mode": "fixed", "normalize": True, "scale": 100.0},
    {"mode": "fixed", "normalize": False},
    {"mode": "learned", "over_boxes": True},
    {"mode": "learned", "over_boxes": False},
    {"mode": "fixed", "n_points": 2, "mlp_cfg": {"hidden_dims": 32, "num_layers": 1, "dropout": 0.0}},
    {"mode": "learned", "n_points": 2, "mlp_cfg": {"hidden_dims": 32, "num_layers": 2, "dropout": 0.0}},
]


@pytest.mark.parametrize(
    "keys", POSITIONAL_MODES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items() if a != "mlp_cfg")
)
def test_distinct_positions_give_distinct_embeddings(keys: dict[str, Any]) -> None:
    torch.manual_seed(0)
    embedding = PositionalEmbedding(PositionalEmbeddingConfig.model_validate(keys), d_model=64).eval()
    anchors = keys.get("n_points", 1)
    # Neighbours one pixel apart, and far apart: all must differ.
    centres = [(100.0, 100.0), (100.0, 101.0), (101.0, 100.0), (500.0, 700.0), (900.0, 50.0)]
    embedded = embedding(boxes_at(centres, anchors=anchors), IMAGE)
    assert embedded.shape == (5, 64)
    assert pairwise_distinct(embedded)


def test_learned_boxes_see_size_and_fixed_normalisation_uses_frame_size() -> None:
    learned = PositionalEmbedding(PositionalEmbeddingConfig(mode="learned"), d_model=64)
    small, large = boxes_at([(300, 300)], 32), boxes_at([(300, 300)], 96)
    assert not torch.allclose(learned(small, IMAGE), learned(large, IMAGE))
    fixed = PositionalEmbedding(PositionalEmbeddingConfig(mode="fixed", normalize=True), d_model=64)
    same_fraction = fixed(boxes_at([(256, 256)]), torch.tensor([512, 512]))
    assert torch.allclose(same_fraction, fixed(boxes_at([(512, 512)]), torch.tensor([1024, 1024])), atol=1e-5)


@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_distinct_frames_give_distinct_embeddings(mode: str) -> None:
    torch.manual_seed(0)
    embedding = TemporalEmbedding(TemporalEmbeddingConfig(mode=mode, emb_num=4), d_model=64)
    offsets = torch.arange(32)  # more frames than table rows: every one still differs
    embedded = embedding(offsets)
    assert embedded.shape == (32, 64)
    assert pairwise_distinct(embedded)


def test_temperature_changes_the_fixed_embeddings() -> None:
    a = TemporalEmbedding(TemporalEmbeddingConfig(mode="fixed", temperature=10000), 32)(torch.arange(4))
    b = TemporalEmbedding(TemporalEmbeddingConfig(mode="fixed", temperature=10), 32)(torch.arange(4))
    assert not torch.allclose(a, b)
    p = PositionalEmbedding(PositionalEmbeddingConfig(mode="fixed", temperature=10000), 32)(boxes_at([(5, 9)]), IMAGE)
    q = PositionalEmbedding(PositionalEmbeddingConfig(mode="fixed", temperature=10), 32)(boxes_at([(5, 9)]), IMAGE)
    assert not torch.allclose(p, q)


def test_scale_and_emb_num_change_the_embeddings() -> None:
    boxes = boxes_at([(300, 400)])
    default = PositionalEmbedding(PositionalEmbeddingConfig(mode="fixed", normalize=True), 32)(boxes, IMAGE)
    scaled = PositionalEmbedding(PositionalEmbeddingConfig(mode="fixed", normalize=True, scale=100.0), 32)(boxes, IMAGE)
    assert not torch.allclose(default, scaled)
    torch.manual_seed(0)
    coarse = TemporalEmbedding(TemporalEmbeddingConfig(mode="learned", emb_num=2), 8)
    torch.manual_seed(0)
    fine = TemporalEmbedding(TemporalEmbeddingConfig(mode="learned", emb_num=16), 8)
    assert coarse.table.table.shape == (2, 8) and fine.table.table.shape == (16, 8)
    offsets = torch.arange(5)
    assert not torch.allclose(coarse(offsets), fine(offsets))
