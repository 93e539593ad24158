"""On a CUDA machine, tracking runs on the GPU (bf16 where supported) and tracks as it does on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreem_trainer.config import validate
from dreem_trainer.inference import run
from tests.conftest import TEST_DATA
from tests.trainer_helpers import track_two_flies_with_dreems_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

DREEM_CHECKPOINT = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"
PARITY = TEST_DATA / "dreem" / "two_flies_parity.pt"


def tracked_on(accelerator: str) -> np.ndarray:
    tracks, model, placement = track_two_flies_with_dreems_model({"accelerator": accelerator})
    assert model.transformer.attn_head.q_proj.layers[0].weight.device.type == placement.device.type == accelerator
    return tracks


def test_the_gpu_computes_dreems_logits_in_bf16() -> None:
    window = torch.load(PARITY, weights_only=True)["window"]
    config = validate(run.tracking_base(DREEM_CHECKPOINT) | {"trainer": {"accelerator": "gpu"}})
    model, placement = run.placed_model(config, DREEM_CHECKPOINT)
    with torch.inference_mode(), placement.autocast():
        output = model(window["crops_u8"], window["bboxes"], window["frame_ids"], window["img_shape"][1:])
    # On a GPU that has bf16 (every one since Ampere), tracking's default is bf16, not a silent float32.
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert placement.device.type == "cuda" and placement.autocast_dtype == expected
    logits = output.matrices[-1].float().cpu()
    # bf16 keeps 8 bits of mantissa: logits near 3 round to about 0.01, and each layer adds its own rounding.
    tolerance = 0.1 if expected is not None else 1e-4
    assert float((logits - window["logits"]).abs().max()) < tolerance


def test_gpu_tracks_equal_cpu_tracks() -> None:
    on_gpu, on_cpu = tracked_on("cuda"), tracked_on("cpu")
    assert len(on_gpu) == len(on_cpu) == 256
    assert float(np.mean(on_gpu == on_cpu)) >= 0.99
