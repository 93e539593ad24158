"""The association loss: for each query instance and each other frame, a softmax over that frame's
instances plus a background slot, scored against the instance with the same ground-truth track."""

from __future__ import annotations

import torch
from torch import nn

from dreem_trainer.config.optimization import LossConfig


def frame_columns(frame_ids: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(T, K) indices of each frame's instances, padded with -1 to the most crowded frame."""
    counts = torch.bincount(frame_ids, minlength=num_frames)
    width = int(counts.max()) if frame_ids.numel() else 0
    columns = torch.full((num_frames, width), -1, dtype=torch.long, device=frame_ids.device)
    order = torch.argsort(frame_ids, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(frame_ids.numel(), device=frame_ids.device) - starts[frame_ids[order]]
    columns[frame_ids[order], slot] = order
    return columns


class AssociationLoss(nn.Module):
    def __init__(self, config: LossConfig) -> None:
        super().__init__()
        self.config = config

    def forward(self, matrices: list[torch.Tensor], frame_ids: torch.Tensor, track_ids: torch.Tensor) -> torch.Tensor:
        """Summed over the decoder layers' (N, N) matrices of one clip, times `asso_weight`."""
        num_frames = int(frame_ids.max()) + 1 if frame_ids.numel() else 0
        if num_frames < 2:
            return matrices[-1].sum() * 0.0
        columns = frame_columns(frame_ids, num_frames)
        padded = columns < 0
        safe = columns.clamp(min=0)
        # target[i, t]: slot k of frame t holding query i's track, K for background, -1 to ignore.
        reference_tracks = torch.where(padded, -2, track_ids[safe])
        same = (reference_tracks[None] == track_ids[:, None, None]) & (track_ids[:, None, None] >= 0)
        has_match = same.any(-1)
        width = columns.shape[1]
        target = torch.where(has_match, same.float().argmax(-1), torch.full_like(has_match, width, dtype=torch.long))
        if not self.config.neg_unmatched:
            target = torch.where(has_match, target, -1)
        own_frame = torch.arange(num_frames, device=frame_ids.device)[None] == frame_ids[:, None]
        target = torch.where(own_frame, -1, target)
        valid = target >= 0
        if not valid.any():
            return matrices[-1].sum() * 0.0
        total = matrices[-1].new_zeros(())
        for matrix in matrices:
            logits = matrix[:, safe].masked_fill(padded[None], float("-inf"))
            logits = torch.cat([logits, logits.new_zeros((*logits.shape[:2], 1))], dim=-1)
            probabilities = logits.softmax(-1)
            chosen = probabilities.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            total = total + (-torch.log(chosen[valid] + self.config.epsilon)).mean()
        return total * self.config.asso_weight
