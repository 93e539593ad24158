"""The yardstick of every bound in `make bench`: what this machine's CPU computes at best.

The bounds the other benchmarks report (bare model steps, bare encoder forwards) are only as meaningful as
the machine they ran on, and a machine that is shared drifts. This prints the CPU's model and the CPUs this
process may use, and the float32 matrix-multiply rate (sgemm, through torch, with the thread pool training
uses) as the median of several timed products, and the bf16 rate where the CPU has native bf16. A bound's
GFLOP/s over this rate says how close to the hardware that bound is.
Prints JSON. Usage: python -m bench.machine
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch

from dreem_trainer.hardware import available_cpus, cpu_has_native_bf16, model_threads

SIZE = 2048
REPEATS = 9


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def matmul_gflops(dtype: torch.dtype) -> float:
    """Median GFLOP/s of SIZE x SIZE products (2 * SIZE^3 operations each), after one untimed product."""
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(SIZE, SIZE, generator=generator).to(dtype)
    b = torch.rand(SIZE, SIZE, generator=generator).to(dtype)
    out = torch.empty(SIZE, SIZE, dtype=dtype)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        rates.append(2 * SIZE**3 / (time.perf_counter() - started) / 1e9)
    return statistics.median(rates)


def main() -> None:
    cpus = available_cpus()
    torch.set_num_threads(model_threads(cpus, 1))
    figures: dict[str, object] = {
        "cpu_model": cpu_model(),
        "available_cpus": cpus,
        "torch_threads": torch.get_num_threads(),
        "sgemm_gflops": matmul_gflops(torch.float32),
        "matrix_size": SIZE,
    }
    if cpu_has_native_bf16():
        figures["bf16_matmul_gflops"] = matmul_gflops(torch.bfloat16)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
