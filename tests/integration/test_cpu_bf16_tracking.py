"""On a CPU with native bf16 (AVX512-BF16 or AMX), `trainer.precision: bf16-mixed` tracks in bf16, as it
trains there, and gives DREEM's model the tracks it gives in float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreem_trainer.config.run import TrainerConfig
from dreem_trainer.hardware import cpu_has_native_bf16
from dreem_trainer.inference.device import inference_device
from tests.trainer_helpers import track_two_flies_with_dreems_model

NATIVE_BF16 = cpu_has_native_bf16()


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        (None, None),
        ("32-true", None),
        ("bf16-mixed", torch.bfloat16 if NATIVE_BF16 else None),
        ("bf16-true", torch.bfloat16 if NATIVE_BF16 else None),
        ("16-mixed", None),
    ],
)
def test_the_cpu_autocasts_to_bf16_only_when_asked_and_native(precision: str | None, expected: torch.dtype) -> None:
    placement = inference_device(TrainerConfig.model_validate({"accelerator": "cpu", "precision": precision}))
    assert placement.device == torch.device("cpu")
    assert placement.autocast_dtype == expected
    with placement.autocast():
        assert torch.is_autocast_enabled("cpu") == (expected is not None)


def tracked_in(precision: str) -> tuple[np.ndarray, torch.dtype]:
    tracks, model, placement = track_two_flies_with_dreems_model({"accelerator": "cpu", "precision": precision})
    with torch.inference_mode(), placement.autocast():
        features = model.visual_encoder(torch.zeros(2, 1, 128, 128))
    return tracks, features.dtype


@pytest.mark.slow
@pytest.mark.skipif(not NATIVE_BF16, reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")
def test_bf16_tracks_on_the_cpu_equal_float32_tracks() -> None:
    (in_bf16, bf16_features), (in_fp32, fp32_features) = tracked_in("bf16-mixed"), tracked_in("32-true")
    assert (bf16_features, fp32_features) == (torch.bfloat16, torch.float32)  # each really ran as asked
    assert len(in_bf16) == len(in_fp32) == 256
    assert float(np.mean(in_bf16 == in_fp32)) >= 0.99
