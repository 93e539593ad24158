"""Pure crop geometry: anchor centres, square crops, boxes and background masks.

Everything here works on numpy arrays of one frame, so a frame's crops are cut in one pass from a
single padded copy, however many instances it holds.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from dreem_trainer.data.records import Instance
from dreem_trainer.data.sources import DataError

Anchors = str | list[str] | int
HandleMissing = Literal["drop", "ignore", "centroid"]
CENTROID = "centroid"


def anchor_names(anchors: Anchors, node_names: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """The node names to crop around; an int draws that many distinct nodes at random."""
    if isinstance(anchors, int):
        if anchors > len(node_names):
            raise DataError(f"dataset anchors: {anchors} random anchors but the skeleton has {len(node_names)} nodes")
        return [str(name) for name in rng.choice(node_names, size=anchors, replace=False)]
    names = [anchors] if isinstance(anchors, str) else list(anchors)
    unknown = [name for name in names if name != CENTROID and name not in node_names]
    if unknown:
        raise DataError(f"dataset anchors: no node named {unknown[0]!r}; the skeleton has {', '.join(node_names)}")
    return names


def anchor_centers(
    instance: Instance, names: list[str], node_names: tuple[str, ...], handle_missing: HandleMissing
) -> npt.NDArray[np.float64] | None:
    """(A, 2) crop centres as x, y; None drops the instance; NaN rows are crops left blank (`ignore`)."""
    centers = np.full((len(names), 2), np.nan)
    for row, name in enumerate(names):
        if name == CENTROID and CENTROID not in node_names:
            point = instance.centroid
        else:
            candidate = instance.points[node_names.index(name)]
            point = None if np.isnan(candidate).any() else candidate
        if point is None:
            if handle_missing == "drop":
                return None
            if handle_missing == "centroid":
                point = instance.centroid
                if point is None:
                    return None
        if point is not None:
            centers[row] = point
    return centers


def cut_crops(image: npt.NDArray[np.uint8], centers: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.uint8]:
    """(K, size, size, C) crops centred on (K, 2) x, y points, zero outside the frame and for NaN centres.

    All crops of a frame come from one padded copy in one gather: a frame with hundreds of small cells
    costs one pad, not hundreds."""
    height, width, channels = image.shape
    half = size // 2 + 1
    crops = np.zeros((len(centers), size, size, channels), dtype=image.dtype)
    valid = ~np.isnan(centers).any(axis=1)
    if not valid.any():
        return crops
    padded = np.pad(image, ((half, half + size), (half, half + size), (0, 0)))
    x, y = centers[valid, 0], centers[valid, 1]
    top = np.clip(np.round(y - size / 2), -half, height).astype(np.int64) + half
    left = np.clip(np.round(x - size / 2), -half, width).astype(np.int64) + half
    offsets = np.arange(size)
    rows = (top[:, None] + offsets)[:, :, None]
    columns = (left[:, None] + offsets)[:, None, :]
    crops[valid] = padded[rows, columns]
    return crops


def boxes_around(centers: npt.NDArray[np.float64], size: int) -> npt.NDArray[np.float32]:
    """(A, 4) boxes as y1, x1, y2, x2 in pixels; NaN centres give NaN boxes."""
    x, y = centers[:, 0], centers[:, 1]
    half = size / 2
    return np.stack([y - half, x - half, y + half, x + half], axis=1).astype(np.float32)


def keypoint_mask(
    points: npt.NDArray[np.float64], center: npt.NDArray[np.float64], size: int, radius: int
) -> npt.NDArray[np.bool_]:
    """(size, size) True within `radius` pixels of a visible keypoint, in the crop centred on `center`."""
    visible = points[~np.isnan(points).any(axis=1)]
    if not len(visible) or np.isnan(center).any():
        return np.zeros((size, size), dtype=bool)
    origin = np.array([round(center[0] - size / 2), round(center[1] - size / 2)])
    local = visible - origin
    ys, xs = np.mgrid[0:size, 0:size]
    distance2 = (xs[None] - local[:, 0, None, None]) ** 2 + (ys[None] - local[:, 1, None, None]) ** 2
    return np.asarray((distance2 <= radius**2).any(axis=0), dtype=bool)
