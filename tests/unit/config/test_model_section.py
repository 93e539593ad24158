"""The model section reads DREEM's model keys as DREEM does, and refuses at load time what DREEM cannot run."""

from __future__ import annotations

from typing import Any

import pytest

from dreem_trainer.config import ConfigError, validate
from dreem_trainer.config.model import ModelConfig, model_section_from_dreem


def model(section: dict[str, Any]) -> ModelConfig:
    return validate({"model": section}).model


def test_dreem_defaults_are_the_defaults() -> None:
    # DREEM's defaults/train.yaml: learned positional and temporal embeddings of 16 rows, resnet18 from timm.
    default = model({})
    pos, temp = default.embedding_meta.pos, default.embedding_meta.temp
    assert pos is not None and (pos.mode, pos.emb_num, pos.normalize, pos.over_boxes) == ("learned", 16, True, True)
    assert temp is not None and (temp.mode, temp.emb_num) == ("learned", 16)
    assert default.embedding_meta.semantics == "corrected"
    assert (default.d_model, default.nhead, default.norm, default.num_layers_attn_head) == (128, 1, False, 1)


def test_dreem_spellings_are_read() -> None:
    read = model(
        {
            "embedding_meta": {
                "embedding_agg_method": "average",
                "pos": {"mode": "learned", "n_points": 2, "mlp_cfg": {"hidden_dim": 64, "num_layers": 2}},
                "temp": {"mode": "off"},
            },
            "encoder_cfg": {"model_name": "ResNet18", "backend": "torch", "in_chans": 1},
        }
    )
    assert read.embedding_meta.pos is not None and read.embedding_meta.pos.mlp_cfg is not None
    assert read.embedding_meta.pos.mlp_cfg.hidden_dims == 64
    assert read.embedding_meta.temp is not None and read.embedding_meta.temp.mode is None
    assert (read.encoder_cfg.model_name, read.encoder_cfg.backend, read.encoder_cfg.in_chans) == (
        "resnet18",
        "torchvision",
        3,
    )


def test_encoder_type_builds_from_its_arguments_only() -> None:
    encoder = model(
        {
            "encoder_cfg": {
                "encoder_type": "resnet",
                "model_name": "resnet50",
                "encoder_type_args": {"model_name": "resnet34", "backend": "torchvision", "zero_init_residual": True},
            }
        }
    ).encoder_cfg
    assert (encoder.model_name, encoder.backend) == ("resnet34", "torchvision")
    assert encoder.extra() == {"zero_init_residual": True}
    # No arguments: DREEM's VisualEncoder defaults.
    assert model({"encoder_cfg": {"encoder_type": "resnet", "model_name": "resnet50"}}).encoder_cfg.model_name == (
        "resnet18"
    )


@pytest.mark.parametrize(
    ("section", "key", "says"),
    [
        ({"encoder_cfg": {"encoder_type": "descriptor"}}, "model.encoder_cfg.encoder_type", "descriptor"),
        ({"encoder_cfg": {"encoder_type": "dino"}}, "model.encoder_cfg.encoder_type", "dino"),
        ({"embedding_meta": {"use_fourier": True}}, "model.embedding_meta.use_fourier", "not supported"),
        (
            {"embedding_meta": {"pos": {"mode": "fixed", "normalize": False, "scale": 3.0}}},
            "model.embedding_meta.pos.scale",
            "normalize: true",
        ),
        ({"d_model": 102, "nhead": 1}, "model.d_model", "multiple of 4"),
        ({"d_model": 36, "embedding_meta": {"pos": {"mode": "fixed"}}}, "model.d_model", "divisible by 8"),
        ({"ckpt_path": "hf://only-owner"}, "model.ckpt_path", "hf://owner/repo"),
    ],
    ids=["descriptor", "dino", "use_fourier", "scale-without-normalize", "learned-width", "fixed-width", "hf-uri"],
)
def test_what_dreem_cannot_run_is_refused_naming_the_key(section: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        model(section)
    (issue,) = raised.value.issues
    assert issue.path == key and says in str(issue), str(issue)


def test_a_dreem_checkpoints_model_cfg_takes_dreems_class_defaults() -> None:
    """Keys a checkpoint's model_cfg leaves out meant DREEM's class defaults, not ours or its train.yaml's."""
    section = model_section_from_dreem(
        {"d_model": 64, "nhead": 2, "embedding_meta": {"pos": {"mode": "fixed"}}, "encoder_cfg": {"in_chans": 3}}
    )
    rebuilt = model(section)
    assert (rebuilt.num_encoder_layers, rebuilt.num_layers_attn_head, rebuilt.decoder_self_attn) == (6, 2, False)
    assert rebuilt.return_intermediate_dec is False
    assert rebuilt.embedding_meta.pos is not None and rebuilt.embedding_meta.pos.normalize is False
    assert rebuilt.embedding_meta.temp is None
    assert rebuilt.embedding_meta.semantics == "dreem-0.5"
    assert model(model_section_from_dreem({})).d_model == 1024
