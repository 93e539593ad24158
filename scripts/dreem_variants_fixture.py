"""Write tests/data/dreem/model_variants.pt: DREEM 0.5.1's GlobalTrackingTransformer built from model
configurations other than the shared checkpoint's (LayerNorms, a two-layer head, several layers and heads,
gelu, fixed embeddings, two anchors with an MLP, no temporal embedding, encoder_type), with the logits each
computes on the same small random input, for tests/unit/models/test_dreem_variants.py.

Runs in the reference implementation's environment (it imports DREEM; nothing of dreem-operator):
    /work/main/.peer/venv/bin/python scripts/dreem_variants_fixture.py OUT.pt

Per variant: `model_cfg` (as a GTRRunner stores it), `state_dict` (the network, randomly initialised with a
fixed seed; timm's tiny `test_resnet` backbone keeps the file small), `inputs` (uint8 crops, boxes y1 x1 y2 x2
in pixels, frame numbers, the frame's height and width) and `logits` (every decoder layer, every instance
querying every instance) and `query_logits` (the last frame's instances querying all, as the tracker asks).
Also `torchvision_keys`: the name and shape of every weight of DREEM's torchvision resnet18 encoder with 6
input channels, whose layout dreem's own torchvision encoder must share.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from dreem.io import Frame, Instance
from dreem.models import GlobalTrackingTransformer
from dreem.models.visual_encoder import VisualEncoder

BACKBONE = {"model_name": "test_resnet", "backend": "timm", "in_chans": 3, "pretrained": False}
LEARNED = {"pos": {"mode": "learned", "emb_num": 16, "over_boxes": True}, "temp": {"mode": "learned", "emb_num": 16}}
COMMON = {"d_model": 64, "dropout": 0.1, "dropout_attn_head": 0.1, "return_embedding": False}

VARIANTS: dict[str, dict[str, Any]] = {
    "norm-deep-gelu": COMMON
    | {
        "nhead": 2,
        "num_encoder_layers": 2,
        "num_decoder_layers": 2,
        "activation": "gelu",
        "norm": True,
        "num_layers_attn_head": 2,
        "return_intermediate_dec": True,
        "decoder_self_attn": False,
        "embedding_meta": LEARNED,
        "encoder_cfg": BACKBONE,
    },
    "fixed-embeddings": COMMON
    | {
        "nhead": 1,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "activation": "relu",
        "norm": False,
        "num_layers_attn_head": 1,
        "return_intermediate_dec": False,
        "decoder_self_attn": True,
        "embedding_meta": {"pos": {"mode": "fixed", "normalize": True}, "temp": {"mode": "fixed"}},
        "encoder_cfg": BACKBONE,
    },
    "two-anchors-mlp": COMMON
    | {
        "nhead": 4,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "activation": "relu",
        "norm": False,
        "num_layers_attn_head": 1,
        "return_intermediate_dec": True,
        "decoder_self_attn": True,
        "embedding_meta": {
            "pos": {
                "mode": "learned",
                "emb_num": 8,
                "n_points": 2,
                "mlp_cfg": {"hidden_dim": 32, "num_layers": 2, "dropout": 0.0},
            },
            "temp": None,
        },
        "encoder_cfg": BACKBONE | {"in_chans": 6},
    },
    "encoder-type-unnormalised": COMMON
    | {
        "nhead": 1,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "activation": "relu",
        "norm": False,
        "num_layers_attn_head": 1,
        "return_intermediate_dec": True,
        "decoder_self_attn": True,
        "embedding_meta": {"pos": {"mode": "fixed", "normalize": False}, "temp": {"mode": "learned", "emb_num": 8}},
        "encoder_cfg": {"encoder_type": "resnet", "encoder_type_args": {"model_name": "test_resnet"}},
    },
}

FRAMES = (0, 1, 3, 4)
"""Frame numbers with a gap, so DREEM's frame ranks and frame offsets differ."""
IMAGE = (480, 640)


def inputs(anchors: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    count = 3 * len(FRAMES)
    centres = torch.rand(count, anchors, 2, generator=generator) * torch.tensor(IMAGE) * 0.8 + 40
    sizes = torch.rand(count, anchors, 2, generator=generator) * 40 + 20
    return {
        "crops_u8": torch.randint(0, 256, (count, 3 * anchors, 32, 32), generator=generator, dtype=torch.uint8),
        "boxes": torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1),
        "frames": torch.tensor(FRAMES).repeat_interleave(3),
        "image_size": torch.tensor(IMAGE),
    }


def frames_of(given: dict[str, torch.Tensor]) -> list[Frame]:
    frames = []
    for number in FRAMES:
        rows = (given["frames"] == number).nonzero().flatten().tolist()
        instances = [
            Instance(
                gt_track_id=index % 3,
                pred_track_id=-1,
                bbox=given["boxes"][index].unsqueeze(0),
                crop=(given["crops_u8"][index].float() / 255).unsqueeze(0),
            )
            for index in rows
        ]
        frames.append(Frame(video_id=0, frame_id=number, img_shape=(3, *IMAGE), instances=instances))
    return frames


SHARED_BACKBONE: dict[str, torch.Tensor] = {}
"""One set of backbone weights for every variant, saved once (each variant differs in its transformer)."""


def run(model_cfg: dict[str, Any], seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = GlobalTrackingTransformer(**model_cfg).eval()
    backbone = model.visual_encoder.feature_extractor
    for key, value in backbone.state_dict().items():
        SHARED_BACKBONE.setdefault(f"{key}{tuple(value.shape)}", value.clone())
    backbone.load_state_dict({k: SHARED_BACKBONE[f"{k}{tuple(v.shape)}"] for k, v in backbone.state_dict().items()})
    anchors = model_cfg["embedding_meta"]["pos"].get("n_points", 1)
    given = inputs(anchors, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        every = [instance for frame in frames_of(given) for instance in frame.instances]
        logits = torch.stack([matrix.matrix for matrix in model(every, None)])
        frames = frames_of(given)
        every, query = [i for f in frames for i in f.instances], frames[-1].instances
        query_logits = torch.stack([matrix.matrix for matrix in model(every, query)])
    return {
        "model_cfg": model_cfg,
        "state_dict": {f"model.{k}": _shared(k, v) for k, v in model.state_dict().items()},
        "inputs": given,
        "logits": logits,
        "query_logits": query_logits,
    }


def _shared(key: str, value: torch.Tensor) -> torch.Tensor:
    """The shared backbone tensor itself where this is one, so torch.save stores it once."""
    name = f"{key.removeprefix('visual_encoder.feature_extractor.')}{tuple(value.shape)}"
    pooled = SHARED_BACKBONE.get(name)
    return pooled if pooled is not None and torch.equal(pooled, value) else value


def main(out: Path) -> None:
    variants = {name: run(cfg, seed) for seed, (name, cfg) in enumerate(VARIANTS.items())}
    encoder = VisualEncoder(model_name="resnet18", d_model=64, in_chans=6, backend="torchvision")
    keys = {name: tuple(value.shape) for name, value in encoder.state_dict().items()}
    torch.save({"variants": variants, "torchvision_keys": keys}, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {', '.join(variants)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
