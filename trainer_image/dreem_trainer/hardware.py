"""What the configured accelerator means for precision, the DDP backend and host-to-device copies.

Decided from the accelerator a run will really use, once, when the Trainer is built or a model is placed
for tracking: the same configuration then trains and tracks in bf16 on a GPU that has it and in fp32 on a
laptop's CPU (in bf16 there only when `trainer.precision` asks for it). Training and tracking both decide
here, so they never disagree about `trainer.precision`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dreem_trainer.config.run import Accelerator, Precision

DdpBackend = Literal["nccl", "gloo"]

GPU_ACCELERATORS: frozenset[str] = frozenset({"gpu", "cuda"})


@dataclass(frozen=True)
class Hardware:
    """The facts about this machine that the choices below depend on (pure data, so they are testable)."""

    cuda_available: bool
    bf16_supported: bool

    @staticmethod
    def detect(device: torch.device | None = None) -> Hardware:
        """This machine; bf16 support as `device` (by default the current CUDA device) has it. For the CPU
        that means native bf16 instructions (AVX512-BF16 or AMX): elsewhere CPU bf16 is emulated, and slower
        than float32, so a CPU without them counts as having none."""
        cuda = torch.cuda.is_available()
        if device is not None and device.type == "cpu":
            return Hardware(cuda_available=cuda, bf16_supported=cpu_has_native_bf16())
        if not cuda:
            return Hardware(cuda_available=False, bf16_supported=False)
        with torch.cuda.device(device):
            return Hardware(cuda_available=True, bf16_supported=torch.cuda.is_bf16_supported())


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX tiles (Intel Xeon since Cooper Lake and Sapphire Rapids, AMD Zen 4): there the
    encoder's convolutions run 2.6x faster in bf16 than in float32 (two_flies' 256 crops, 2 cores with AMX).
    torch asks the CPU through its private `torch.cpu` probes; a torch without them counts as no."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def uses_gpu(accelerator: Accelerator, hardware: Hardware) -> bool:
    """Whether training runs on CUDA devices: asked for by name, or "auto" on a machine that has them."""
    return accelerator in GPU_ACCELERATORS or (accelerator == "auto" and hardware.cuda_available)


def resolve_precision(configured: Precision | None, accelerator: Accelerator, hardware: Hardware) -> Precision:
    """An explicit `trainer.precision` wins; otherwise bf16-mixed on a GPU with bf16 tensor cores (about
    twice fp32's speed, and unlike fp16 it needs no loss scaling) and fp32 everywhere else: CPU autocast
    to bf16 is slower than fp32 on most CPUs."""
    if configured is not None:
        return configured
    if uses_gpu(accelerator, hardware) and hardware.bf16_supported:
        return "bf16-mixed"
    return "32-true"


def autocast_dtype(precision: Precision, hardware: Hardware) -> torch.dtype | None:
    """The dtype a resolved precision autocasts a forward pass to on CUDA; None runs in float32 (or
    float64). A bf16 precision on a GPU without bf16 falls back to float32 rather than failing: a model
    trained in bf16 elsewhere still tracks on an older GPU."""
    if precision.startswith("bf16"):
        return torch.bfloat16 if hardware.bf16_supported else None
    if precision.startswith("16"):
        return torch.float16
    return None


def model_threads(cpus: int, training_processes: int) -> int:
    """Threads for the model's own operations in each training process: its share of the CPUs it may use.
    Loader workers are not subtracted: how much of a core a worker takes depends on the workload (measured on
    2 cores, 2 workers: a tiny model over 32 videos went from 49 to 77 frames/s with one thread fewer, and the
    reference resnet18 workload fell from 26.0 to 12.5), and a compute-bound step loses more than a wait."""
    return max(1, cpus // max(1, training_processes))


CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def available_cpus() -> int:
    """The CPUs this process may use: its affinity (a container's cpuset) where the system tells it, and no more
    than its cgroup's CPU quota, which is how a Kubernetes CPU limit reaches a pod: the node's CPUs all stay in
    the affinity, and threads beyond the quota only get throttled."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return min(cpus, quota) if quota is not None else cpus


def cgroup_cpu_quota() -> int | None:
    """Whole CPUs in this process's cgroup quota (cgroup v2, else v1); None where there is none or no cgroup."""
    try:
        if CGROUP_V2_CPU_MAX.is_file():
            return cpus_in_quota(*CGROUP_V2_CPU_MAX.read_text().split()[:2])
        quota, period = (CGROUP_V1_CPU / "cpu.cfs_quota_us"), (CGROUP_V1_CPU / "cpu.cfs_period_us")
        if quota.is_file() and period.is_file():
            return cpus_in_quota(quota.read_text().strip(), period.read_text().strip())
    except (OSError, ValueError, TypeError):
        return None
    return None


def cpus_in_quota(quota: str, period: str) -> int | None:
    """`quota` microseconds of CPU time every `period` as whole CPUs, rounded down (a thread on a fraction of
    a CPU is throttled) but at least 1; None for no quota ("max" in cgroup v2, -1 in v1)."""
    if quota == "max" or int(quota) < 0:
        return None
    return max(1, int(quota) // int(period))


def ddp_backend(accelerator: Accelerator, hardware: Hardware) -> DdpBackend:
    """NCCL between GPUs (NVLink and InfiniBand aware); gloo between CPU processes, where NCCL cannot run."""
    return "nccl" if uses_gpu(accelerator, hardware) else "gloo"
