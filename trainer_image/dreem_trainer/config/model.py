"""The `model` section: the global tracking transformer and its visual encoder."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import PassThroughSection, Section
from dreem_trainer.config.issues import did_you_mean, key_error
from dreem_trainer.config.library_names import library_names
from dreem_trainer.config.paths import check_path


class MLPConfig(Section):
    """MLP that mixes the per-point embeddings when more than one point is embedded."""

    hidden_dims: int = Field(256, gt=0, description="Dimensionality of MLP hidden layers.")
    num_layers: int = Field(1, ge=1, description="Number of hidden layers.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability for each hidden layer.")


class PositionalEmbeddingConfig(Section):
    mode: Literal["fixed", "learned"] | None = Field(
        "fixed", description='Embedding type. Options: "fixed" (sinusoidal), "learned", or null (no embedding).'
    )
    n_points: int = Field(1, ge=1, description="Number of points to embed (1 for centroid, 3+ for bbox coordinates).")
    normalize: bool = Field(
        True, description="Whether to normalize positions (only for fixed embeddings, default: true)."
    )
    temperature: float = Field(
        10000.0,
        gt=0,
        description="Temperature constant for sinusoidal position embedding (only for fixed, default: 10000).",
    )
    scale: float | None = Field(
        None, gt=0, description="Factor to scale positions after normalizing (only for fixed, optional)."
    )
    emb_num: int = Field(16, ge=2, description="Number of embeddings in lookup table (only for learned).")
    over_boxes: bool = Field(
        True,
        description="Whether to compute embedding for bbox coordinates (y1x1y2x2) or centroid+size (yxwh) "
        "(only for learned, default: true).",
    )
    mlp_cfg: MLPConfig | None = Field(
        None, description="MLP configuration. Required when n_points > 1, optional otherwise."
    )

    @model_validator(mode="after")
    def _points_need_mlp(self) -> PositionalEmbeddingConfig:
        if self.mode is not None and self.n_points > 1 and self.mlp_cfg is None:
            raise key_error("n_points", "n_points > 1 needs mlp_cfg (hidden_dims, num_layers, dropout)", self.n_points)
        return self


class TemporalEmbeddingConfig(Section):
    mode: Literal["fixed", "learned"] | None = Field(
        "fixed", description='Embedding type. Options: "fixed", "learned", or null (no embedding).'
    )
    temperature: float = Field(
        10000.0, gt=0, description="Temperature constant for sinusoidal embedding (only for fixed, default: 10000)."
    )
    emb_num: int = Field(16, ge=2, description="Number of embeddings in lookup table (only for learned).")


class EmbeddingMetaConfig(Section):
    pos: PositionalEmbeddingConfig | None = Field(
        default_factory=PositionalEmbeddingConfig, description="Positional embedding; null for none."
    )
    temp: TemporalEmbeddingConfig | None = Field(
        default_factory=TemporalEmbeddingConfig, description="Temporal embedding; null for none."
    )


class EncoderConfig(PassThroughSection):
    """Visual encoder; extra keys go to `timm.create_model` or the torchvision ResNet constructor."""

    model_name: str = Field(
        "resnet18",
        description="Name of visual encoder backbone. For timm backend, any model in timm.list_models() is "
        "available. For torchvision, only ResNet models are available.",
    )
    backend: Literal["timm", "torchvision"] = Field(
        "timm", description='Backend library. Options: "timm" or "torchvision" (default: "timm").'
    )
    in_chans: int = Field(
        3, ge=1, description="Number of input channels (default: 3, use more for multi-anchor crops)."
    )
    pretrained: bool = Field(
        False, description="Whether to use pretrained weights or initialize randomly (default: false)."
    )

    @model_validator(mode="after")
    def _known_backbone(self) -> EncoderConfig:
        names = library_names()
        known = names.timm_models if self.backend == "timm" else names.torchvision_resnets
        if self.model_name not in known:
            hint = did_you_mean(self.model_name, known)
            what = "timm.list_models()" if self.backend == "timm" else "torchvision's ResNets"
            raise key_error("model_name", f"not a model in {what}{hint}", self.model_name)
        return self


class ModelConfig(Section):
    ckpt_path: str | None = Field(
        None, description="Path to model checkpoint file for resuming training (use null for new training)."
    )
    d_model: int = Field(128, gt=0, description="Size of embedding dimensions for the transformer (default: 128).")
    nhead: int = Field(
        1, gt=0, description="Number of attention heads in transformer encoder/decoder layers (default: 1)."
    )
    num_encoder_layers: int = Field(1, ge=0, description="Number of layers in transformer encoder (default: 1).")
    num_decoder_layers: int = Field(1, ge=1, description="Number of layers in transformer decoder (default: 1).")
    dropout: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout probability used in each transformer layer (default: 0.1)."
    )
    activation: Literal["relu", "gelu", "glu"] = Field(
        "relu", description='Activation function. Options: "relu", "gelu", "glu" (default: "relu").'
    )
    return_intermediate_dec: bool = Field(
        True, description="Whether to return output from intermediate decoder layers (default: true)."
    )
    norm: bool = Field(False, description="Whether to normalize output of encoder and decoder (default: false).")
    num_layers_attn_head: int = Field(1, ge=1, description="Number of layers in the AttentionHead block (default: 1).")
    dropout_attn_head: float = Field(
        0.1, ge=0.0, lt=1.0, description="Dropout probability for the AttentionHead block (default: 0.1)."
    )
    return_embedding: bool = Field(False, description="Whether to return spatiotemporal embeddings (default: false).")
    decoder_self_attn: bool = Field(True, description="Whether to use self attention in the decoder (default: true).")
    embedding_meta: EmbeddingMetaConfig = Field(
        default_factory=EmbeddingMetaConfig, description="Positional (pos) and temporal (temp) embeddings."
    )
    encoder_cfg: EncoderConfig = Field(default_factory=EncoderConfig, description="Visual encoder configuration.")
    compile: bool = Field(
        False,
        description="Compile the visual encoder with torch.compile when training: faster steps after a one-off "
        "compilation of tens of seconds per new crop count (default: false).",
    )

    @field_validator("ckpt_path")
    @classmethod
    def _checkpoint_path(cls, path: str | None) -> str | None:
        return check_path(path) if path else path

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.d_model % self.nhead:
            raise key_error("nhead", f"nhead must divide d_model ({self.d_model})", self.nhead)
        return self
