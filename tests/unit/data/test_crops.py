"""Crop geometry: anchors, missing nodes, borders, boxes and background masks."""

from __future__ import annotations

import numpy as np
import pytest

from dreem_trainer.data.crops import HandleMissing, anchor_centers, anchor_names, boxes_around, cut_crops, keypoint_mask
from dreem_trainer.data.records import Instance
from dreem_trainer.data.sources import DataError

NODES = ("head", "thorax", "tail")


def instance(*points: tuple[float, float]) -> Instance:
    return Instance(points=np.array(points, dtype=np.float64))


def centres(fly: Instance, names: list[str], handle_missing: HandleMissing = "drop") -> list[list[float]]:
    found = anchor_centers(fly, names, NODES, handle_missing)
    assert found is not None
    return list(found.tolist())


def test_named_anchor_and_centroid() -> None:
    fly = instance((10, 20), (30, 40), (np.nan, np.nan))
    assert centres(fly, ["thorax"]) == [[30, 40]]
    assert centres(fly, ["centroid"]) == [[20, 30]]
    assert centres(fly, ["head", "thorax"]) == [[10, 20], [30, 40]]


def test_missing_anchor_handling() -> None:
    fly = instance((10, 20), (30, 40), (np.nan, np.nan))
    assert anchor_centers(fly, ["tail"], NODES, "drop") is None
    assert centres(fly, ["tail"], "centroid") == [[20, 30]]
    ignored = anchor_centers(fly, ["tail"], NODES, "ignore")
    assert ignored is not None and np.isnan(ignored).all()


def test_anchor_names_validate_and_draw() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="no node named 'wing'"):
        anchor_names("wing", NODES, rng)
    drawn = anchor_names(2, NODES, rng)
    assert len(set(drawn)) == 2 and set(drawn) <= set(NODES)
    with pytest.raises(DataError, match="4 random anchors"):
        anchor_names(4, NODES, rng)


def test_crops_are_centred_and_zero_outside_the_frame() -> None:
    image = np.full((100, 100, 1), 7, dtype=np.uint8)
    image[50, 40] = 255
    image[0, 0] = 9
    (crop,) = cut_crops(image, np.array([[40.0, 50.0]]), 10)
    assert crop[5, 5, 0] == 255
    (corner,) = cut_crops(image, np.array([[0.0, 0.0]]), 10)
    assert (corner[:5, :5] == 0).all() and corner[5, 5, 0] == image[0, 0, 0]
    (blank,) = cut_crops(image, np.array([[np.nan, np.nan]]), 10)
    assert not blank.any()


def test_crops_in_one_gather_equal_windows_of_the_zero_padded_frame() -> None:
    """Crops inside the frame, across its edges and far outside it (held just outside, all zeros but an
    edge row or column), against windows of the frame padded with zeros, cut one at a time."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        height, width, channels = int(rng.integers(20, 120)), int(rng.integers(20, 120)), int(rng.integers(1, 4))
        size = int(rng.integers(2, 40))
        image = rng.integers(1, 255, (height, width, channels), dtype=np.uint8)
        centers = np.stack(
            [
                rng.uniform(-2 * size - 30, width + 2 * size + 30, 12),
                rng.uniform(-2 * size - 30, height + 2 * size + 30, 12),
            ],
            axis=1,
        )
        centers[rng.random(12) < 0.1] = np.nan
        margin = size + 2 * (size // 2 + 1)
        padded = np.pad(image, ((margin, margin), (margin, margin), (0, 0)))
        crops = cut_crops(image, centers, size)
        for crop, (x, y) in zip(crops, centers, strict=True):
            if np.isnan(x) or np.isnan(y):
                assert not crop.any()
                continue
            top = int(np.clip(np.round(y - size / 2), -(size // 2 + 1), height)) + margin
            left = int(np.clip(np.round(x - size / 2), -(size // 2 + 1), width)) + margin
            assert np.array_equal(crop, padded[top : top + size, left : left + size])


def test_boxes_and_mask() -> None:
    assert boxes_around(np.array([[40.0, 50.0]]), 10).tolist() == [[45, 35, 55, 45]]
    mask = keypoint_mask(np.array([[40.0, 50.0], [np.nan, np.nan]]), np.array([40.0, 50.0]), 21, 3)
    assert (
        mask[10, 10]
        and not mask[0, 0]
        and mask.sum() == np.sum(np.add.outer((np.arange(21) - 10) ** 2, (np.arange(21) - 10) ** 2) <= 9)
    )
