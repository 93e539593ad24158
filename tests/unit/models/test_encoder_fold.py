"""Tracking folds the encoder's BatchNorms into its convolutions: the features must not change."""

from __future__ import annotations

import torch
from torch import nn

from dreem_trainer.config.model import ModelConfig
from dreem_trainer.models.encoder import batchnorms_in
from dreem_trainer.models.gtr import GlobalTrackingTransformer


def test_folding_batchnorm_keeps_the_features_and_leaves_no_batchnorm() -> None:
    torch.manual_seed(0)
    model = GlobalTrackingTransformer(ModelConfig.model_validate({"d_model": 64, "nhead": 2}))
    # Statistics far from the defaults (mean 0, variance 1, no affine change), as training leaves them:
    # a fold that ignored any of them would change the features.
    for module in model.visual_encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    encoder = model.visual_encoder.eval()
    crops = torch.randint(0, 256, (6, 1, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        before = encoder(crops)
        assert encoder.fold_batchnorm() == 0
        after = encoder(crops)
    # Neither a BatchNorm module nor a traced batch_norm call is left in the network.
    assert isinstance(encoder.feature_extractor, torch.fx.GraphModule)
    assert batchnorms_in(encoder.feature_extractor) == 0
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_a_backbone_whose_batchnorms_do_not_fold_is_left_as_it_was() -> None:
    """timm's BatchNormAct2d (efficientnet) is not a Conv2d-then-BatchNorm2d pair torch.fx folds: the fold
    says how many are left, and the encoder keeps its own modules."""
    model = GlobalTrackingTransformer(
        ModelConfig.model_validate({"d_model": 64, "nhead": 2, "encoder_cfg": {"model_name": "efficientnet_b0"}})
    )
    encoder = model.visual_encoder.eval()
    original = encoder.feature_extractor
    crops = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    with torch.inference_mode():
        before = encoder(crops)
        left = encoder.fold_batchnorm()
        after = encoder(crops)
    assert left > 0
    assert encoder.feature_extractor is original
    assert torch.equal(after, before)
