"""The association loss rewards linking each instance to its own track in every other frame."""

from __future__ import annotations

import torch

from dreem_trainer.config.optimization import LossConfig
from dreem_trainer.training.loss import AssociationLoss, frame_columns

# Three frames, two animals each; animal 0 is always listed first.
FRAMES = torch.tensor([0, 0, 1, 1, 2, 2])
TRACKS = torch.tensor([0, 1, 0, 1, 0, 1])


def logits_for(tracks: torch.Tensor, strength: float) -> torch.Tensor:
    same = (tracks[:, None] == tracks[None, :]).float()
    return same * strength - (1 - same) * strength


def test_frame_columns_group_instances_by_frame() -> None:
    columns = frame_columns(torch.tensor([1, 0, 1, 2, 1]), 3)
    assert columns.tolist() == [[1, -1, -1], [0, 2, 4], [3, -1, -1]]


def test_right_associations_cost_less_than_wrong_ones() -> None:
    loss = AssociationLoss(LossConfig())
    right = loss([logits_for(TRACKS, 5.0)], FRAMES, TRACKS)
    wrong = loss([logits_for(TRACKS, -5.0)], FRAMES, TRACKS)
    assert float(right) < 0.05 < 3.0 < float(wrong)


def test_asso_weight_scales_and_layers_add_up() -> None:
    logits = logits_for(TRACKS, 1.0)
    one = AssociationLoss(LossConfig())([logits], FRAMES, TRACKS)
    assert torch.isclose(AssociationLoss(LossConfig(asso_weight=2.0))([logits], FRAMES, TRACKS), 2 * one)
    assert torch.isclose(AssociationLoss(LossConfig())([logits, logits], FRAMES, TRACKS), 2 * one)


def test_epsilon_bounds_the_loss_of_a_certain_mistake() -> None:
    logits = logits_for(TRACKS, -100.0)
    small = AssociationLoss(LossConfig(epsilon=1e-4))([logits], FRAMES, TRACKS)
    large = AssociationLoss(LossConfig(epsilon=0.1))([logits], FRAMES, TRACKS)
    assert torch.isclose(small, -torch.log(torch.tensor(1e-4)), rtol=1e-3)
    assert torch.isclose(large, -torch.log(torch.tensor(0.1)), rtol=1e-3)


def test_unmatched_instances_count_only_with_neg_unmatched() -> None:
    # Track 2 appears in frame 2 only: it has no match in frames 0 and 1.
    tracks = torch.tensor([0, 1, 0, 1, 0, 2])
    logits = logits_for(tracks, 5.0)
    ignored = AssociationLoss(LossConfig(neg_unmatched=False))([logits], FRAMES, tracks)
    counted = AssociationLoss(LossConfig(neg_unmatched=True))([logits], FRAMES, tracks)
    assert not torch.isclose(ignored, counted)
    # With background as the target, scoring the newcomer low against everything is right.
    quiet = logits.clone()
    quiet[5, :] = -10.0
    assert AssociationLoss(LossConfig(neg_unmatched=True))([quiet], FRAMES, tracks) < counted


def test_untracked_instances_are_never_a_target() -> None:
    tracks = torch.tensor([0, -1, 0, -1, 0, -1])
    logits = logits_for(torch.tensor([0, 1, 0, 1, 0, 1]), 5.0)
    loss = AssociationLoss(LossConfig())([logits], FRAMES, tracks)
    assert torch.isfinite(loss) and float(loss) < 0.05


def test_gradients_flow() -> None:
    logits = torch.zeros(6, 6, requires_grad=True)
    AssociationLoss(LossConfig())([logits], FRAMES, TRACKS).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
