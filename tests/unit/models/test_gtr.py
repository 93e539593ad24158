"""The model keys shape what the GlobalTrackingTransformer computes."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dreem_trainer.config.model import ModelConfig
from dreem_trainer.models.encoder import INFERENCE_BATCH, WeightsUnavailableError
from dreem_trainer.models.gtr import AssociationOutput, GlobalTrackingTransformer
from dreem_trainer.models.transformer import EncoderLayer

TINY: dict[str, Any] = {"d_model": 32, "nhead": 2, "encoder_cfg": {"model_name": "test_resnet"}}


def build(**keys: Any) -> GlobalTrackingTransformer:
    torch.manual_seed(0)
    return GlobalTrackingTransformer(ModelConfig.model_validate(TINY | keys)).eval()


def run(model: GlobalTrackingTransformer, count: int = 6, channels: int = 3) -> AssociationOutput:
    torch.manual_seed(1)
    crops = torch.rand(count, channels, 32, 32)
    centres = torch.rand(count, 2) * 900
    boxes = torch.cat([centres - 16, centres + 16], dim=1)[:, None]
    offsets = torch.arange(count) // 2
    output: AssociationOutput = model(crops, boxes, offsets, torch.tensor([1024, 1024]))
    return output


def test_association_matrix_is_instances_by_instances() -> None:
    output = run(build())
    assert output.matrices[-1].shape == (6, 6)
    assert output.embeddings is None


def test_intermediate_decoder_outputs() -> None:
    assert len(run(build(num_decoder_layers=3, return_intermediate_dec=True)).matrices) == 3
    assert len(run(build(num_decoder_layers=3, return_intermediate_dec=False)).matrices) == 1


def test_return_embedding() -> None:
    output = run(build(return_embedding=True))
    assert output.embeddings is not None and set(output.embeddings) == {"pos", "temp"}
    assert output.embeddings["pos"].shape == (6, 32)
    none = run(build(return_embedding=True, embedding_meta={"pos": None, "temp": {"mode": None}}))
    assert none.embeddings == {}


@pytest.mark.parametrize(
    "keys",
    [
        {"activation": "gelu"},
        {"activation": "glu"},
        {"decoder_self_attn": False},
        {"num_layers_attn_head": 3},
        {"num_encoder_layers": 2},
        {"nhead": 4},
        {"d_model": 64},
        {"embedding_meta": {"pos": {"mode": "fixed"}}},
        {"embedding_meta": {"temp": {"mode": "fixed"}}},
        {"embedding_meta": {"pos": None}},
        {"embedding_meta": {"semantics": "dreem-0.5"}},
        {"norm": True},
        {"encoder_cfg": {"model_name": "resnet18", "backend": "torchvision"}},
    ],
    ids=str,
)
def test_each_model_key_changes_the_output(keys: dict[str, Any]) -> None:
    baseline = run(build()).matrices[-1]
    changed = run(build(**keys)).matrices[-1]
    assert changed.shape == baseline.shape
    assert not torch.allclose(changed, baseline)


def test_dropout_attn_head_drops_between_head_layers() -> None:
    # Dropout sits between the head's layers (as in the reference), so it needs two; only the head trains,
    # so BatchNorm in the encoder cannot be what changes the scores.
    outputs = []
    for rate in (0.0, 0.5):
        model = build(num_layers_attn_head=2, dropout_attn_head=rate)
        model.transformer.attn_head.train()
        outputs.append(run(model).matrices[-1])
    assert not torch.allclose(outputs[0], outputs[1])
    deterministic = build(num_layers_attn_head=2, dropout_attn_head=0.0)
    deterministic.transformer.attn_head.train()
    assert torch.allclose(run(deterministic).matrices[-1], outputs[0])


def test_structure_follows_keys() -> None:
    without = build(decoder_self_attn=False)
    assert all(layer.self_attn is None for layer in without.transformer.decoder.layers)
    assert len(build(num_encoder_layers=3).transformer.encoder.layers) == 3
    assert len(build(num_layers_attn_head=3).transformer.attn_head.q_proj.layers) == 3


def layer_norms(model: GlobalTrackingTransformer) -> list[torch.nn.LayerNorm]:
    return [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]


def test_norm_puts_a_layer_norm_after_every_block_or_none_at_all() -> None:
    # DREEM's layers have no LayerNorm without `norm`; with it, one after every attention and feed-forward
    # block (three per decoder layer, even without self-attention) and one closing each of encoder and decoder.
    assert layer_norms(build(norm=False)) == []
    normed = build(norm=True, num_encoder_layers=2, num_decoder_layers=3, decoder_self_attn=False)
    assert len(layer_norms(normed)) == 2 * 2 + 3 * 3 + 2
    # The norms are learned: moving their parameters moves the association scores.
    before = run(normed).matrices[-1]
    with torch.no_grad():
        normed.transformer.decoder.norm.weight.mul_(3.0)  # type: ignore[operator]
    assert not torch.allclose(run(normed).matrices[-1], before)


def test_feed_forward_is_d_model_wide_and_features_are_unit_length() -> None:
    model = build(d_model=64)
    layer = model.transformer.encoder.layers[0]
    assert isinstance(layer, EncoderLayer)
    assert layer.linear1.weight.shape == layer.linear2.weight.shape == (64, 64)
    features = model.visual_encoder(torch.rand(5, 3, 32, 32))
    assert torch.allclose(features.norm(dim=1), torch.ones(5), atol=1e-5)


def test_dreem_model_keys_build_what_dreem_builds() -> None:
    # encoder_type resnet: the encoder comes from encoder_type_args alone, as in DREEM.
    typed = build(
        encoder_cfg={
            "model_name": "resnet50",
            "encoder_type": "resnet",
            "encoder_type_args": {"model_name": "test_resnet"},
        }
    )
    assert typed.config.encoder_cfg.model_name == "test_resnet"
    assert run(typed).matrices[-1].shape == (6, 6)
    # DREEM's MLP key hidden_dim, and its count of layers (the output layer included).
    mlp = {"hidden_dim": 16, "num_layers": 2, "dropout": 0.0}
    model = build(embedding_meta={"pos": {"mode": "learned", "n_points": 2, "mlp_cfg": mlp}})
    assert model.transformer.pos_emb is not None
    widths = [layer.weight.shape for layer in model.transformer.pos_emb.mlp.layers]  # type: ignore[union-attr]
    assert widths == [(16, 32), (32, 16)]
    assert build(encoder_cfg={"model_name": "test_resnet", "in_chans": 1}).config.encoder_cfg.in_chans == 3
    # A grey crop is repeated on three channels, as DREEM does.
    grey = build().visual_encoder(torch.rand(2, 1, 32, 32))
    assert grey.shape == (2, 32)


def test_in_chans_for_stacked_anchors() -> None:
    for backend, name in (("timm", "test_resnet"), ("torchvision", "resnet18")):
        model = build(encoder_cfg={"model_name": name, "backend": backend, "in_chans": 6})
        assert run(model, channels=6).matrices[-1].shape == (6, 6)


def test_pretrained_weights_offline_fail_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(
        WeightsUnavailableError, match=r"model.encoder_cfg.pretrained: weights for timm model 'resnet18'"
    ):
        build(encoder_cfg={"model_name": "resnet18", "pretrained": True})


def test_tracking_encodes_crops_in_batches_with_the_same_result() -> None:
    model = build()
    crops = torch.randint(0, 255, (INFERENCE_BATCH + 44, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        batched = model.visual_encoder(crops)
        assert torch.allclose(batched[:INFERENCE_BATCH], model.visual_encoder(crops[:INFERENCE_BATCH]), atol=1e-6)
        assert torch.allclose(batched[INFERENCE_BATCH:], model.visual_encoder(crops[INFERENCE_BATCH:]), atol=1e-6)
