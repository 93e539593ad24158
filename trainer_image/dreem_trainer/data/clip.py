"""`Clip`: the model-ready tensors of consecutive labelled frames of one video."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import torch


@dataclass(frozen=True)
class Clip:
    """Instances of T frames, flattened: row i of every per-instance tensor is the same instance."""

    crops: torch.Tensor
    """(N, C, H, W) uint8 crops (the encoder scales them to [0, 1]); anchors stacked on channels."""
    boxes: torch.Tensor
    """(N, A, 4) y1, x1, y2, x2 in pixels, one box per anchor."""
    frame_ids: torch.Tensor
    """(N,) index of each instance's frame within the clip, 0..T-1."""
    track_ids: torch.Tensor
    """(N,) ground-truth identity, -1 when untracked."""
    index_in_frame: torch.Tensor
    """(N,) position of the instance in its labelled frame, to write tracks back to the labels."""
    frame_indices: torch.Tensor
    """(T,) frame numbers in the video."""
    image_size: torch.Tensor
    """(2,) frame height and width in pixels."""
    video_index: int
    points: torch.Tensor | None = None
    """(N, n_nodes, 2) keypoints as x, y in pixels, NaN where hidden: the tracker's body axes use them."""
    node_names: tuple[str, ...] = ()
    """The names of the points' nodes: the tracker's `front_nodes` and `back_nodes` pick them by name."""

    @property
    def num_frames(self) -> int:
        return int(self.frame_indices.numel())

    @property
    def num_instances(self) -> int:
        return int(self.frame_ids.numel())

    @property
    def nbytes(self) -> int:
        """The bytes of all its tensors, as the clip cache counts them."""
        tensors = [value for f in fields(self) if isinstance(value := getattr(self, f.name), torch.Tensor)]
        return sum(tensor.nbytes for tensor in tensors)

    def _map_tensors(self, change: Callable[[torch.Tensor], torch.Tensor]) -> Clip:
        changed: dict[str, Any] = {
            f.name: change(getattr(self, f.name))
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **changed)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Clip:
        """`non_blocking` lets a copy from pinned memory overlap the work already queued on the GPU."""
        return self._map_tensors(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Clip:
        """Called by the DataLoader's pinning thread (`pin_memory=True`) on each clip it hands over."""
        return self._map_tensors(lambda tensor: tensor.pin_memory())


def collate_clips(batch: list[Clip]) -> list[Clip]:
    """Clips hold different numbers of instances, so a batch stays a list."""
    return batch
