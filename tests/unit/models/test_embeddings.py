"""Every embedding mode separates distinct positions and distinct frames in the corrected reading (DREEM 0.5's
two did not); DREEM's reading, kept for its checkpoints, reproduces its defects."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dreem_trainer.config.model import EmbeddingSemantics, PositionalEmbeddingConfig, TemporalEmbeddingConfig
from dreem_trainer.models.embeddings import (
    PositionalEmbedding,
    TemporalEmbedding,
    normalised_boxes,
)

IMAGE = torch.tensor([1024, 1024])


def positional(semantics: EmbeddingSemantics = "corrected", d_model: int = 64, **keys: Any) -> PositionalEmbedding:
    return PositionalEmbedding(PositionalEmbeddingConfig.model_validate(keys), d_model, semantics)


def temporal(semantics: EmbeddingSemantics = "corrected", d_model: int = 64, **keys: Any) -> TemporalEmbedding:
    return TemporalEmbedding(TemporalEmbeddingConfig.model_validate(keys), d_model, semantics)


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
    embedding = positional(**keys).eval()
    anchors = keys.get("n_points", 1)
    # Neighbours one pixel apart, and far apart: all must differ.
    centres = [(100.0, 100.0), (100.0, 101.0), (101.0, 100.0), (500.0, 700.0), (900.0, 50.0)]
    embedded = embedding(boxes_at(centres, anchors=anchors), IMAGE)
    assert embedded.shape == (5, 64)
    assert pairwise_distinct(embedded)


def test_learned_boxes_see_size_and_fixed_normalisation_uses_frame_size() -> None:
    learned = positional(mode="learned")
    small, large = boxes_at([(300, 300)], 32), boxes_at([(300, 300)], 96)
    assert not torch.allclose(learned(small, IMAGE), learned(large, IMAGE))
    fixed = positional(mode="fixed", normalize=True)
    same_fraction = fixed(boxes_at([(256, 256)], size=32), torch.tensor([512, 512]))
    assert torch.allclose(same_fraction, fixed(boxes_at([(512, 512)], size=64), torch.tensor([1024, 1024])), atol=1e-5)


@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_distinct_frames_give_distinct_embeddings(mode: str) -> None:
    torch.manual_seed(0)
    embedding = temporal(mode=mode, emb_num=4)
    offsets = torch.arange(32)  # more frames than table rows: every one still differs
    embedded = embedding(offsets)
    assert embedded.shape == (32, 64)
    assert pairwise_distinct(embedded)


def test_temperature_changes_the_fixed_embeddings() -> None:
    a = temporal(mode="fixed", temperature=10000, d_model=32)(torch.arange(4))
    b = temporal(mode="fixed", temperature=10, d_model=32)(torch.arange(4))
    assert not torch.allclose(a, b)
    p = positional(mode="fixed", temperature=10000, d_model=32)(boxes_at([(5, 9)]), IMAGE)
    q = positional(mode="fixed", temperature=10, d_model=32)(boxes_at([(5, 9)]), IMAGE)
    assert not torch.allclose(p, q)


def test_scale_and_emb_num_change_the_embeddings() -> None:
    boxes = boxes_at([(300, 400)])
    default = positional(mode="fixed", normalize=True, d_model=32)(boxes, IMAGE)
    scaled = positional(mode="fixed", normalize=True, scale=100.0, d_model=32)(boxes, IMAGE)
    assert not torch.allclose(default, scaled)
    torch.manual_seed(0)
    coarse = temporal(mode="learned", emb_num=2, d_model=8)
    torch.manual_seed(0)
    fine = temporal(mode="learned", emb_num=16, d_model=8)
    assert coarse.lookup.weight.shape == (2, 8) and fine.lookup.weight.shape == (16, 8)
    offsets = torch.arange(5)
    assert not torch.allclose(coarse(offsets), fine(offsets))


def test_dreem_reading_reproduces_its_defects_and_corrected_does_not() -> None:
    torch.manual_seed(0)
    frames = torch.tensor([0, 3, 4, 9])
    dreem_temporal = temporal("dreem-0.5", mode="learned")(frames)
    # DREEM multiplies frame ranks by the table length: every frame after the first reads the last row.
    assert torch.allclose(dreem_temporal[1:], dreem_temporal[-1:].expand(3, -1), atol=1e-5)
    assert pairwise_distinct(temporal(mode="learned")(frames))
    centres = [(100.0, 100.0), (500.0, 700.0), (900.0, 50.0)]
    # DREEM's normalised fixed positions divide each box by itself: a constant.
    constant = positional("dreem-0.5", mode="fixed", normalize=True)(boxes_at(centres), IMAGE)
    assert torch.allclose(constant, constant[:1].expand(3, -1), atol=1e-3)
    assert pairwise_distinct(positional(mode="fixed", normalize=True)(boxes_at(centres), IMAGE))


def test_frames_are_ranks_for_dreem_and_offsets_for_corrected() -> None:
    # A gap in the frames: DREEM numbers the frames present 0, 1, 2; corrected keeps the gap's length.
    readings: list[tuple[EmbeddingSemantics, bool]] = [("dreem-0.5", True), ("corrected", False)]
    for semantics, same in readings:
        embedding = temporal(semantics, mode="fixed")
        assert torch.allclose(embedding(torch.tensor([0, 1, 5])), embedding(torch.tensor([0, 1, 2]))) == same


def test_boxes_are_normalised_by_the_frame_dreem_with_its_axes_swapped() -> None:
    box = torch.tensor([[[100.0, 300.0, 200.0, 400.0]]])
    frame = torch.tensor([600, 1200])  # height, width
    corrected = torch.tensor([100 / 600, 300 / 1200, 200 / 600, 400 / 1200])
    assert torch.allclose(normalised_boxes(box, frame, "corrected"), corrected)
    assert torch.allclose(normalised_boxes(box, frame, "dreem-0.5"), corrected * torch.tensor([0.5, 2, 0.5, 2]))
    missing = torch.full((1, 1, 4), float("nan"))
    assert normalised_boxes(missing, frame, "dreem-0.5").eq(-1).all()
