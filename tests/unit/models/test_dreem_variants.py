"""DREEM networks of other configurations than the shared checkpoint's load here and compute DREEM's logits:
LayerNorms (`norm`), a two-layer head, several layers and heads, gelu, fixed embeddings, two anchors through
an MLP, no temporal embedding, and `encoder_type`.

DREEM itself built each network and computed its logits (scripts/dreem_variants_fixture.py, run in DREEM's
environment, wrote tests/data/dreem/model_variants.pt).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from dreem_trainer.config.model import EncoderConfig
from dreem_trainer.models.checkpoint import load_model
from dreem_trainer.models.encoder import VisualEncoder
from tests.conftest import TEST_DATA


@cache
def fixture() -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(TEST_DATA / "dreem" / "model_variants.pt", weights_only=True)
    return loaded


@pytest.mark.parametrize(
    "variant", ["norm-deep-gelu", "fixed-embeddings", "two-anchors-mlp", "encoder-type-unnormalised"]
)
def test_dreem_variant_computes_dreems_logits(variant: str, tmp_path: Path) -> None:
    recorded = fixture()["variants"][variant]
    checkpoint = tmp_path / f"{variant}.ckpt"
    # As a GTRRunner checkpoint stores them.
    torch.save(
        {"hyper_parameters": {"model_cfg": recorded["model_cfg"]}, "state_dict": recorded["state_dict"]}, checkpoint
    )
    model = load_model(checkpoint)
    given = recorded["inputs"]
    count = given["frames"].numel()
    last = (given["frames"] == given["frames"].max()).nonzero().flatten()
    with torch.no_grad():
        every = model(given["crops_u8"], given["boxes"], given["frames"], given["image_size"])
        queried = model(given["crops_u8"], given["boxes"], given["frames"], given["image_size"], query_index=last)
    ours, theirs = torch.stack(every.matrices), recorded["logits"]
    assert ours.shape == theirs.shape == (ours.shape[0], count, count)
    assert float((ours - theirs).abs().max()) < 1e-4
    assert float((torch.stack(queried.matrices) - recorded["query_logits"]).abs().max()) < 1e-4


def test_torchvision_encoder_has_dreems_parameter_layout() -> None:
    encoder = VisualEncoder(EncoderConfig(model_name="resnet18", backend="torchvision", in_chans=6), d_model=64)
    ours = {name: tuple(value.shape) for name, value in encoder.state_dict().items()}
    assert ours == fixture()["torchvision_keys"]
