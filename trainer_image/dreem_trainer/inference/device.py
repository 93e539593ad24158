"""Where `dreem track` and `dreem eval` run: the device `trainer.accelerator` asks for (CUDA by default when
there is one), and the reduced precision that device runs fast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from dreem_trainer.config.run import TrainerConfig
from dreem_trainer.contract import UserError
from dreem_trainer.hardware import Hardware, autocast_dtype, resolve_precision


class DeviceUnavailableError(UserError, RuntimeError):
    """The configuration asks for a device this machine lacks."""


TRAINING_MACHINE_KEYS = ("accelerator", "devices", "strategy", "num_nodes")
"""trainer keys that describe the machine a model was trained on, not the one tracking with it."""


@dataclass(frozen=True)
class InferenceDevice:
    device: torch.device
    autocast_dtype: torch.dtype | None
    """bf16 (or fp16) autocast for the model's forward passes; None runs in float32."""

    def autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def __str__(self) -> str:
        precision = {None: "float32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}
        return f"{self.device} ({precision[self.autocast_dtype]})"


def inference_device(trainer: TrainerConfig) -> InferenceDevice:
    """`trainer.accelerator` (auto: CUDA when present, else CPU) and `trainer.devices` (a list picks the GPU);
    `trainer.precision` 32 turns autocast off, 16-mixed picks fp16; by default CUDA runs bf16 where it can.
    The CPU runs float32 unless `trainer.precision` asks for bf16 and the CPU has it natively, as training
    on that CPU then would."""
    accelerator = trainer.accelerator
    cuda = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not cuda:
        raise DeviceUnavailableError(
            f"trainer.accelerator: {accelerator} asks for a CUDA GPU and this machine has none (use --no-gpu or cpu)"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError("trainer.accelerator: mps asks for Apple's Metal GPU and this machine has none")
    if accelerator in ("tpu", "ipu", "hpu"):
        raise DeviceUnavailableError(f"trainer.accelerator: tracking runs on cpu, cuda or mps, not {accelerator}")
    if accelerator == "mps":
        return InferenceDevice(torch.device("mps"), None)
    if accelerator == "cpu" or not cuda:
        cpu = torch.device("cpu")
        hardware = Hardware.detect(cpu)
        dtype = autocast_dtype(resolve_precision(trainer.precision, "cpu", hardware), hardware)
        # fp16 autocast on a CPU is emulated: slower than the float32 it would replace.
        return InferenceDevice(cpu, dtype if dtype == torch.bfloat16 else None)
    index = trainer.devices[0] if isinstance(trainer.devices, list) and trainer.devices else 0
    device = torch.device("cuda", index)
    hardware = Hardware.detect(device)
    return InferenceDevice(device, autocast_dtype(resolve_precision(trainer.precision, "cuda", hardware), hardware))
