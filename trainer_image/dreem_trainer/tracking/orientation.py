"""Body axes for `max_angle_diff`: the direction an animal points, from its keypoints or, for centroid-only
skeletons, from the texture of its crop.

The first rule that applies wins, as in DREEM: the front-to-back vector of the named nodes; the dominant
image-gradient direction of the crop when the skeleton is a single "centroid" node; else the principal
axis of the visible keypoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

CENTROID = "centroid"


def centroid_only(node_names: Sequence[str]) -> bool:
    """A skeleton that is one node named "centroid" (cells, detections without pose)."""
    return len(node_names) <= 1 and CENTROID in node_names


def body_axis(
    points: npt.NDArray[np.floating],
    node_names: Sequence[str],
    front_nodes: Sequence[str] | None,
    back_nodes: Sequence[str] | None,
    crop: torch.Tensor | None,
) -> torch.Tensor | None:
    """(2,) float32 axis as (x, y), or None when no rule applies (the frame then skips the angle term).

    `points` is (n_nodes, 2) x, y with NaN for hidden nodes; `crop` (C, H, W) uint8.
    """
    if not centroid_only(node_names):
        prompted = _front_to_back(points, node_names, front_nodes, back_nodes)
        if prompted is not None:
            return prompted
    elif crop is not None and crop.numel():
        return _gradient_axis(crop)
    if centroid_only(node_names):
        return None
    return _principal_axis(points)


def _front_to_back(
    points: npt.NDArray[np.floating],
    node_names: Sequence[str],
    front_nodes: Sequence[str] | None,
    back_nodes: Sequence[str] | None,
) -> torch.Tensor | None:
    """The unit vector from the first back node the skeleton has to the first front node it has; None when
    either is missing from the skeleton or hidden in this instance."""
    front = next((node_names.index(n) for n in front_nodes or () if n in node_names), None)
    back = next((node_names.index(n) for n in back_nodes or () if n in node_names), None)
    if front is None or back is None or np.isnan(points[front]).any() or np.isnan(points[back]).any():
        return None
    vector = torch.tensor(np.asarray(points[front], dtype=np.float64) - np.asarray(points[back], dtype=np.float64))
    norm = torch.norm(vector)
    if norm > 1e-8:
        vector = vector / norm
    return vector.float()


def _principal_axis(points: npt.NDArray[np.floating]) -> torch.Tensor:
    """From the singular value decomposition of the centred visible keypoints, the first column of Vᵀ.

    DREEM takes the column, not the first row (the principal direction itself); for a 2x2 Vᵀ the two agree
    up to a reflection that depends on the decomposition's signs. Kept as DREEM computes it, since its
    trackers were tuned with it.
    """
    pose = torch.tensor(np.asarray(points, dtype=np.float64), dtype=torch.float32)
    visible = pose[~torch.isnan(pose).any(dim=-1)]
    _, _, vt = torch.linalg.svd(visible - visible.mean(dim=0))
    axis: torch.Tensor = vt[:, 0]
    return axis


def _gradient_axis(crop: torch.Tensor) -> torch.Tensor:
    """The direction along the object: the eigenvector of the crop's gradient structure tensor with the
    smaller eigenvalue (gradients point across an elongated cell, not along it)."""
    from scipy import ndimage

    image = (crop.float() / 255).permute(1, 2, 0).numpy()
    gx = ndimage.sobel(image, axis=1)
    gy = ndimage.sobel(image, axis=0)
    tensor = np.array([[(gx * gx).mean(), (gx * gy).mean()], [(gx * gy).mean(), (gy * gy).mean()]])
    values, vectors = np.linalg.eig(tensor)
    order = values.argsort()[::-1]
    return torch.as_tensor(vectors[:, order][:, 1], dtype=torch.float32)
