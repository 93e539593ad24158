"""The `model` section: the global tracking transformer and its visual encoder.

The keys mean what they mean in DREEM 0.5: a DREEM model configuration builds the same network here,
and a DREEM checkpoint's `model_cfg` becomes this section through `model_section_from_dreem`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import PassThroughSection, Section
from dreem_trainer.config.issues import did_you_mean, key_error
from dreem_trainer.config.library_names import library_names
from dreem_trainer.config.notices import no_effect
from dreem_trainer.config.paths import check_path

HUB_SCHEME = "hf://"

EmbeddingSemantics = Literal["corrected", "dreem-0.5"]
DREEM_SEMANTICS: EmbeddingSemantics = "dreem-0.5"
"""How DREEM 0.5 reads embeddings, and so the mark of a model DREEM trained (or one fine-tuned from it)."""


class MLPConfig(Section):
    """Linear layers (ReLU and dropout between them) that project the per-point embeddings to `d_model`."""

    hidden_dims: int = Field(256, gt=0, description="Dimensionality of MLP hidden layers.")
    hidden_dim: int | None = Field(
        None, gt=0, exclude=True, description="DREEM's spelling of hidden_dims: the same key, read into it."
    )
    num_layers: int = Field(
        1,
        ge=0,
        description="Number of linear layers, the output layer included, as DREEM counts them: 1 is a single "
        "projection, 0 none.",
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability after each hidden layer.")

    @model_validator(mode="before")
    @classmethod
    def _dreem_spelling(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("hidden_dim") is None:
            return data
        if data.get("hidden_dims") not in (None, data["hidden_dim"]):
            raise key_error("hidden_dim", "is hidden_dims in DREEM's spelling: give one of the two", data["hidden_dim"])
        return {k: v for k, v in data.items() if k != "hidden_dim"} | {"hidden_dims": data["hidden_dim"]}


class PositionalEmbeddingConfig(Section):
    mode: Literal["fixed", "learned"] | None = Field(
        "learned",
        description='Embedding type. Options: "fixed" (sinusoidal), "learned", or null (no embedding) '
        "(default: learned, as in DREEM's defaults).",
    )
    n_points: int = Field(
        1, ge=1, description="Number of points (anchors) embedded per instance; 1 embeds the mean box of all anchors."
    )
    normalize: bool = Field(
        True, description="Whether to normalize positions (only for fixed embeddings, default: true)."
    )
    temperature: float = Field(
        10000.0,
        gt=0,
        description="Temperature constant for sinusoidal position embedding (only for fixed, default: 10000).",
    )
    scale: float | None = Field(
        None, gt=0, description="Factor to scale positions after normalizing (only for fixed, default 2*pi)."
    )
    emb_num: int = Field(16, ge=2, description="Number of embeddings in lookup table (only for learned).")
    over_boxes: bool = Field(
        True,
        description="Whether to compute embedding for bbox coordinates (y1x1y2x2) or centroid+size (yxwh) "
        "(only for learned, default: true; DREEM 0.5 fails on false, dreem supports it for new models).",
    )
    mlp_cfg: MLPConfig | None = Field(
        None, description="MLP configuration. Required when n_points > 1, optional otherwise."
    )

    @field_validator("mode", mode="before")
    @classmethod
    def _off_is_none(cls, mode: Any) -> Any:
        return None if isinstance(mode, str) and mode.lower() == "off" else mode

    @model_validator(mode="after")
    def _points_need_mlp(self) -> PositionalEmbeddingConfig:
        if self.mode is not None and self.n_points > 1 and self.mlp_cfg is None:
            raise key_error("n_points", "n_points > 1 needs mlp_cfg (hidden_dims, num_layers, dropout)", self.n_points)
        if self.mode == "fixed" and self.n_points > 1 and not self.projects():
            assert self.mlp_cfg is not None
            raise key_error(
                "mlp_cfg.num_layers",
                f"fixed embeddings of {self.n_points} points are {self.n_points} x d_model wide: at least one layer "
                "must project them to d_model",
                self.mlp_cfg.num_layers,
            )
        if self.mode == "fixed" and self.scale is not None and not self.normalize:
            raise key_error("scale", "scale applies to normalized positions only: set normalize: true", self.scale)
        return self

    def projects(self) -> bool:
        """Whether an MLP maps the concatenated per-point embeddings to d_model."""
        return self.mlp_cfg is not None and self.mlp_cfg.num_layers > 0


class TemporalEmbeddingConfig(Section):
    mode: Literal["fixed", "learned"] | None = Field(
        "learned",
        description='Embedding type. Options: "fixed", "learned", or null (no embedding) '
        "(default: learned, as in DREEM's defaults).",
    )
    temperature: float = Field(
        10000.0, gt=0, description="Temperature constant for sinusoidal embedding (only for fixed, default: 10000)."
    )
    emb_num: int = Field(16, ge=2, description="Number of embeddings in lookup table (only for learned).")

    @field_validator("mode", mode="before")
    @classmethod
    def _off_is_none(cls, mode: Any) -> Any:
        return None if isinstance(mode, str) and mode.lower() == "off" else mode


class EmbeddingMetaConfig(Section):
    pos: PositionalEmbeddingConfig | None = Field(
        default_factory=PositionalEmbeddingConfig, description="Positional embedding; null for none."
    )
    temp: TemporalEmbeddingConfig | None = Field(
        default_factory=TemporalEmbeddingConfig, description="Temporal embedding; null for none."
    )
    semantics: EmbeddingSemantics = Field(
        "corrected",
        description="How boxes and frames become embeddings. corrected (models trained here): learned tables are "
        "read across the frame's extent and the frames' offsets, fixed positions are normalised by the frame "
        "size, so distinct positions and frames get distinct vectors. dreem-0.5: DREEM 0.5's reading, set for "
        "checkpoints DREEM trained, whose weights expect it: the learned temporal embedding gives every frame "
        "after the first the same row, normalised fixed positions are constant, and y/x are divided by the "
        "frame's width/height.",
    )
    embedding_agg_method: str | None = Field(
        None,
        description="Accepted for DREEM configs; no effect: DREEM always averages the two embeddings.",
        json_schema_extra=no_effect("DREEM always averages the positional and temporal embeddings"),
        exclude=True,
    )
    embedding_type: Any = Field(
        None,
        description="Accepted for DREEM configs; no effect (DREEM never reads it).",
        json_schema_extra=no_effect("DREEM never reads it"),
        exclude=True,
    )
    use_fourier: bool = Field(
        False,
        description="DREEM's Fourier temporal features; only false is supported (DREEM 0.5 fails with true "
        "unless encoder_type is descriptor, which dreem does not support).",
    )

    @field_validator("use_fourier")
    @classmethod
    def _no_fourier(cls, use_fourier: bool) -> bool:
        if use_fourier:
            raise ValueError(
                "Fourier temporal features are not supported (DREEM 0.5 itself fails with them except with the "
                "descriptor encoder); remove the key or set it to false"
            )
        return use_fourier


ENCODER_TYPE_ARGS = frozenset({"model_name", "backend", "in_chans", "pretrained"})


class EncoderConfig(PassThroughSection):
    """Visual encoder; extra keys go to `timm.create_model` or the torchvision ResNet constructor."""

    @model_validator(mode="before")
    @classmethod
    def _extra_keys_are_not_typos(cls, data: Any) -> Any:
        """An extra key goes to the backbone's constructor, which only refuses it once training starts (or, a
        rate given as a word, in the first forward pass): a near miss of this section's own keys (`pretraind`)
        and a `*_rate` that is not a number are refused here, with the key."""
        if not isinstance(data, dict):
            return data
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            # Closer than timm's own `pretrained_cfg` is to `pretrained` (0.83): only a slip of a letter or two.
            near = did_you_mean(key, cls.model_fields, cutoff=0.85)
            if near:
                raise key_error(key, f"unknown key{near}", value)
            if (
                key.endswith("_rate")
                and value is not None
                and (isinstance(value, bool) or not isinstance(value, int | float))
            ):
                raise key_error(key, "a number (a dropout rate, from 0 to 1)", value)
        return data

    model_name: str = Field(
        "resnet18",
        description="Name of visual encoder backbone. For timm backend, any model in timm.list_models() is "
        "available. For torchvision, only ResNet models are available.",
    )
    backend: Literal["timm", "torchvision"] = Field(
        "timm", description='Backend library. Options: "timm" or "torchvision" (default: "timm").'
    )
    in_chans: int = Field(
        3,
        ge=1,
        description="Number of input channels (default: 3, use more for multi-anchor crops; 1 is read as 3, "
        "as in DREEM: grey frames are repeated on three channels).",
    )
    pretrained: bool = Field(
        False, description="Whether to use pretrained weights or initialize randomly (default: false)."
    )
    encoder_type: Literal["resnet"] | None = Field(
        None,
        description="DREEM's encoder choice. resnet: the encoder is built from encoder_type_args alone (the "
        "other keys of this section are ignored, as in DREEM). DREEM's descriptor and dino are not supported.",
    )
    encoder_type_args: dict[str, Any] | None = Field(
        None, description="With encoder_type: the encoder's arguments (model_name, backend, in_chans, pretrained, ...)."
    )
    ndim: int | None = Field(
        None,
        description="DREEM's descriptor feature size; no effect with the resnet encoder.",
        json_schema_extra=no_effect("it sizes DREEM's descriptor encoder only"),
        exclude=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _encoder_type_args_rule(cls, data: Any) -> Any:
        """With `encoder_type`, DREEM builds the encoder from `encoder_type_args` and nothing else."""
        if not isinstance(data, dict) or data.get("encoder_type") is None:
            return data
        kind = data["encoder_type"]
        if kind != "resnet":
            raise key_error(
                "encoder_type",
                "only DREEM's resnet encoder is supported (descriptor and dino are not); remove the key for the "
                "timm/torchvision encoder",
                kind,
            )
        args = data.get("encoder_type_args") or {}
        if not isinstance(args, dict):
            raise key_error("encoder_type_args", "must be a mapping of encoder arguments", args)
        return {"encoder_type": kind, "encoder_type_args": args, "ndim": data.get("ndim"), **args}

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_as_dreem_reads_it(cls, backend: Any) -> Any:
        # DREEM picks timm for any name containing "timm" and torchvision for any containing "torch".
        if isinstance(backend, str):
            lowered = backend.lower()
            if "timm" in lowered:
                return "timm"
            if "torch" in lowered:
                return "torchvision"
        return backend

    @field_validator("model_name", mode="before")
    @classmethod
    def _lower_case(cls, name: Any) -> Any:
        return name.lower() if isinstance(name, str) else name

    @field_validator("in_chans")
    @classmethod
    def _grey_is_three(cls, in_chans: int) -> int:
        return 3 if in_chans == 1 else in_chans

    @model_validator(mode="after")
    def _known_backbone(self) -> EncoderConfig:
        names = library_names()
        known = names.timm_models if self.backend == "timm" else names.torchvision_resnets
        if self.model_name not in known:
            hint = did_you_mean(self.model_name, known)
            what = "timm.list_models()" if self.backend == "timm" else "torchvision's ResNets"
            raise key_error("model_name", f"not a model in {what}{hint}", self.model_name)
        return self

    def extra(self) -> dict[str, Any]:
        """Keyword arguments for the backbone constructor beyond the documented keys."""
        if self.encoder_type is not None:
            return {k: v for k, v in (self.encoder_type_args or {}).items() if k not in ENCODER_TYPE_ARGS}
        return super().extra()


class ModelConfig(Section):
    ckpt_path: str | None = Field(
        None,
        description="Checkpoint to start from: one of ours resumes training; one DREEM wrote starts training from "
        "its weights (fine-tuning). A path, an s3:// URI or hf://owner/repo[/file] (a Hugging Face repo).",
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
    norm: bool = Field(
        False,
        description="Whether to normalize: true puts a LayerNorm after every attention and feed-forward block and "
        "at the end of the encoder and decoder; false has none (default: false).",
    )
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
        if path and path.startswith(HUB_SCHEME):
            repo = path.removeprefix(HUB_SCHEME).split("@")[0].split("/")
            if len([part for part in repo if part]) < 2:
                raise ValueError(f"{path!r}: a Hugging Face checkpoint is hf://owner/repo[@revision][/file]")
            return path
        return check_path(path) if path else path

    @model_validator(mode="after")
    def _widths_divide(self) -> ModelConfig:
        if self.d_model % self.nhead:
            raise key_error("nhead", f"nhead must divide d_model ({self.d_model})", self.nhead)
        pos = self.embedding_meta.pos
        if pos is None or pos.mode is None:
            return self
        if pos.mode == "fixed" and self.d_model % 8:
            raise key_error("d_model", "fixed positional embeddings need d_model divisible by 8", self.d_model)
        if pos.mode == "learned":
            columns = 4 * pos.n_points
            if self.d_model < columns or (self.d_model % columns and not pos.projects()):
                raise key_error(
                    "d_model",
                    f"learned positional embeddings of {pos.n_points} point(s) split d_model into {columns} parts: "
                    f"make it a multiple of {columns}, or give embedding_meta.pos.mlp_cfg",
                    self.d_model,
                )
        return self


DREEM_MODEL_DEFAULTS: dict[str, Any] = {
    "d_model": 1024,
    "nhead": 8,
    "num_encoder_layers": 6,
    "num_decoder_layers": 6,
    "dropout": 0.1,
    "activation": "relu",
    "return_intermediate_dec": False,
    "norm": False,
    "num_layers_attn_head": 2,
    "dropout_attn_head": 0.1,
    "return_embedding": False,
    "decoder_self_attn": False,
}
"""DREEM 0.5's GlobalTrackingTransformer defaults: what a key absent from a checkpoint's `model_cfg` meant there."""

DREEM_EMBEDDING_DEFAULTS: dict[str, Any] = {
    "n_points": 1,
    "emb_num": 16,
    "over_boxes": True,
    "temperature": 10000.0,
    "normalize": False,
    "scale": None,
    "mlp_cfg": None,
}
"""DREEM 0.5's Embedding defaults (normalize is false there; only its train.yaml sets it)."""


def model_section_from_dreem(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The model section that rebuilds a DREEM checkpoint's network, from its `hyper_parameters.model_cfg`.

    Keys the checkpoint leaves out take DREEM's class defaults (not ours), and the embeddings keep
    DREEM's reading, since the weights were trained with it.
    """
    section: dict[str, Any] = DREEM_MODEL_DEFAULTS | {
        key: value for key, value in model_cfg.items() if key not in ("embedding_meta", "encoder_cfg")
    }
    meta = dict(model_cfg.get("embedding_meta") or {})
    for kind in ("pos", "temp"):
        embedding = meta.get(kind)
        meta[kind] = DREEM_EMBEDDING_DEFAULTS | dict(embedding) if embedding else None
        if kind == "temp" and meta[kind] is not None:
            meta[kind] = {k: v for k, v in meta[kind].items() if k in TemporalEmbeddingConfig.model_fields}
    section["embedding_meta"] = meta | {"semantics": DREEM_SEMANTICS}
    section["encoder_cfg"] = dict(model_cfg.get("encoder_cfg") or {})
    return section
