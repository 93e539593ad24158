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

    The crops inside the frame come out of it in one gather: a frame with hundreds of small cells costs one
    gather, not hundreds. The few that reach past an edge are cut one by one onto zeros; padding the whole
    frame for them instead cost a copy of the frame (3712x3712 on ten_zfish: a tenth of a second a frame)."""
    height, width, channels = image.shape
    half = size // 2 + 1
    crops = np.zeros((len(centers), size, size, channels), dtype=image.dtype)
    valid = ~np.isnan(centers).any(axis=1)
    if not valid.any():
        return crops
    x, y = centers[valid, 0], centers[valid, 1]
    # Centres far outside the frame are held just outside it, as a frame padded by `half` would hold them.
    top = np.clip(np.round(y - size / 2), -half, height).astype(np.int64)
    left = np.clip(np.round(x - size / 2), -half, width).astype(np.int64)
    inside = (top >= 0) & (left >= 0) & (top + size <= height) & (left + size <= width)
    chosen = np.flatnonzero(valid)
    if inside.any():
        offsets = np.arange(size)
        rows = (top[inside, None] + offsets)[:, :, None]
        columns = (left[inside, None] + offsets)[:, None, :]
        crops[chosen[inside]] = image[rows, columns]
    for target, crop_top, crop_left in zip(chosen[~inside], top[~inside], left[~inside], strict=True):
        rows_from, rows_to = max(crop_top, 0), min(crop_top + size, height)
        columns_from, columns_to = max(crop_left, 0), min(crop_left + size, width)
        if rows_from < rows_to and columns_from < columns_to:
            crops[
                target, rows_from - crop_top : rows_to - crop_top, columns_from - crop_left : columns_to - crop_left
            ] = image[rows_from:rows_to, columns_from:columns_to]
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
