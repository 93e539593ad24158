"""The GPU path measured in one run that fits in 5 minutes of device time (an H200 with 16 CPU cores).

Figures, in one JSON document written after each one (to $OUT/gpu.json when OUT is set, else --out), so a
failure or the time budget running out loses only the figures not yet taken:
- training frames/s on two_flies (the bundled clip) and a synthetic ten_zfish (10 fish, 3712x3712, 32 frames),
  fp32 ("32-true", matrix products on TF32) against bf16-mixed, at the reference workload (one 32-frame clip
  per step) and at a batch of clips that fills the GPU, with the peak GPU memory of each;
- the share of step time in the model (torch.profiler: GPU kernel time over wall time) against the share
  spent waiting for the data loader;
- torch.compile of the encoder (`model.compile: true`) against the same run without;
- tracking frames/s on two_flies;
- DREEM 0.5.1's training frames/s on the same GPU and clip, when the `dreem` package can be imported.
Throughput runs train without validation, checkpoints or logger: they time the training loop alone,
from the steps after the first epoch (which decodes and fills the clip cache).

Usage: python -m bench.gpu [--smoke] [--budget-s S] [--out PATH] [--no-peer]
`--smoke` runs a reduced version on CPU in about two minutes (tiny backbone, small synthetic frames), to
test the script without a GPU. The device's wheels: bench/gpu_wheels.sh.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "trainer_image") not in sys.path:  # on the device the package is used from the tree, not installed
    sys.path.insert(0, str(REPO / "trainer_image"))

from bench import zfish  # noqa: E402
from bench.common import DEMO_DATA, WORKLOAD  # noqa: E402

FRAMES_PER_CLIP = 32


class Report:
    """The JSON document, rewritten whole after every figure."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.started = time.monotonic()

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data["elapsed_s"] = round(time.monotonic() - self.started, 1)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(self.data, indent=2, default=str))
            partial.replace(self.path)
        print(f"[gpu bench {self.data['elapsed_s']:6.1f}s] {key}: {json.dumps(value, default=str)[:400]}", flush=True)

    def remaining_s(self, budget_s: float) -> float:
        return budget_s - (time.monotonic() - self.started)

    def figure(self, key: str, budget_s: float, needs_s: float, take: Callable[[], Any]) -> None:
        """Take one figure; its error, or too little time left, is recorded instead of stopping the run."""
        left = self.remaining_s(budget_s)
        if left < needs_s:
            self.put(key, {"skipped": f"{left:.0f} s left of the budget, this figure needs about {needs_s:.0f} s"})
            return
        started = time.monotonic()
        try:
            value = take()
        except Exception as error:
            value = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-2000:]}
        if isinstance(value, dict):
            value.setdefault("figure_s", round(time.monotonic() - started, 1))
        self.put(key, value)


# ---------------------------------------------------------------------------------------------- synthetic data


def copies(source: Path, stem: str, count: int, directory: Path) -> Path:
    """`count` copies of one labelled video under different names (links): more clips per epoch."""
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        for suffix in (".slp", ".mp4"):
            link = directory / f"{stem}_{index}{suffix}"
            if not link.exists():
                link.symlink_to((source / f"{stem}{suffix}").resolve())
    return directory


# ------------------------------------------------------------------------------------------------- training


class StepClock:
    """Per training step: the wait for its batch and the step itself (synchronised with the GPU), the frames
    it trained on; and a torch.profiler window over `profile_steps` steps of the last epoch."""

    def __init__(self, profile_steps: int = 0) -> None:
        import lightning.pytorch as pl
        import torch

        self.torch = torch
        self.records: list[tuple[int, float, float, int]] = []  # epoch, wait, step, frames
        self.profile_steps = profile_steps
        self.profile: dict[str, Any] | None = None
        clock = self

        class Hooks(pl.Callback):
            def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
                clock.sync()
                clock.last_end = time.perf_counter()

            def on_train_batch_start(
                self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, idx: int
            ) -> None:
                clock.begin = time.perf_counter()
                clock.maybe_start_profile(trainer, idx)

            def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
                clock.sync()
                end = time.perf_counter()
                batch = args[1]
                frames = sum(clip.num_frames for clip in batch)
                clock.records.append((trainer.current_epoch, clock.begin - clock.last_end, end - clock.begin, frames))
                clock.last_end = end
                if args[2] + 1 >= clock.profile_steps:
                    clock.stop_profile(args[2] + 1)

            def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
                clock.stop_profile(len([r for r in clock.records if r[0] == trainer.current_epoch]))

        self.callback = Hooks()
        self.last_end = self.begin = 0.0
        self._profiler: Any = None
        self._profiled_from = 0.0

    def sync(self) -> None:
        if self.torch.cuda.is_available():
            self.torch.cuda.synchronize()

    def maybe_start_profile(self, trainer: Any, idx: int) -> None:
        last_epoch = trainer.current_epoch == trainer.max_epochs - 1
        if self.profile_steps and last_epoch and idx == 0 and self._profiler is None and self.profile is None:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.torch.cuda.is_available() else [])
            self._profiler = profile(activities=activities)
            self._profiler.__enter__()
            self._profiled_from = self.last_end  # the window includes the wait for this first batch

    def stop_profile(self, steps: int) -> None:
        """After `profile_steps` steps, or at the end of the epoch if it has fewer."""
        if self._profiler is None:
            return
        self.sync()
        wall_us = (time.perf_counter() - self._profiled_from) * 1e6
        self._profiler.__exit__(None, None, None)
        from torch._C._autograd import DeviceType

        events = self._profiler.key_averages()
        # The kernels (and copies) themselves: the ATen ops that launched them report the same time again, and
        # user annotations (Lightning's and the optimizer's record_function ranges, which the profiler also puts
        # on the GPU's timeline) span whole groups of kernels, so counting them would count those twice.
        kernels = [event for event in events if event.device_type == DeviceType.CUDA and not event.is_user_annotation]
        kernel_us = sum(event.self_device_time_total for event in kernels)
        data_us = sum(event.cpu_time_total for event in events if event.key.startswith("enumerate(DataLoader)"))
        top = sorted(kernels, key=lambda event: event.self_device_time_total, reverse=True)[:8]
        self.profile = {
            "steps": steps,
            "wall_ms": round(wall_us / 1e3, 2),
            "gpu_kernel_share": round(kernel_us / wall_us, 3) if kernel_us else None,
            "data_loader_wait_share": round(data_us / wall_us, 3),
            "top_gpu_ops_ms": {e.key[:60]: round(e.self_device_time_total / 1e3, 2) for e in top if kernel_us},
        }
        self._profiler = None

    def summary(self, skip_epochs: int) -> dict[str, Any]:
        steady = [r for r in self.records if r[0] >= skip_epochs] or self.records
        wait = sum(r[1] for r in steady)
        step = sum(r[2] for r in steady)
        frames = sum(r[3] for r in steady)
        steps = sorted(r[1] + r[2] for r in steady)
        return {
            "train_frames_per_s": round(frames / (wait + step), 2),
            "frames_per_step": steady[0][3],
            "steps_timed": len(steady),
            "median_step_ms": round(1e3 * steps[len(steps) // 2], 2),
            "model_share_of_step": round(step / (wait + step), 3),
            "data_wait_share_of_step": round(wait / (wait + step), 3),
        }


def train_figure(
    settings: Settings,
    data_dir: Path,
    *,
    precision: str,
    batch: int,
    epochs: int,
    workers: int,
    profile_steps: int = 0,
    compile_encoder: bool = False,
    keep_model: list[Any] | None = None,
) -> dict[str, Any]:
    """Train `epochs` epochs on every clip of `data_dir` with `batch` clips per step; time the steps."""
    import torch

    from dreem_trainer.config import validate
    from dreem_trainer.config.loader import deep_merge
    from dreem_trainer.training.run import run_training

    with tempfile.TemporaryDirectory() as out:
        split = deep_merge(settings.split, {"dir": {"path": str(data_dir)}})
        raw = deep_merge(
            WORKLOAD,
            {
                "model": deep_merge(settings.model, {"compile": compile_encoder}),
                "dataset": {"train_dataset": split, "val_dataset": None},
                "dataloader": {"train_dataloader": {"shuffle": True, "num_workers": workers, "batch_size": batch}},
                "logging": None,
                "checkpointing": {"dirpath": f"{out}/models"},
                "trainer": {
                    "accelerator": settings.accelerator,
                    "max_epochs": epochs,
                    "precision": precision,
                    "enable_checkpointing": False,
                },
            },
        )
        raw["dataset"].pop("val_dataset")
        clock = StepClock(profile_steps)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        trainer = run_training(validate(raw), callbacks=[clock.callback])
        result = clock.summary(skip_epochs=1)
        result |= {"precision": precision, "clips_per_step": batch, "epochs": epochs, "num_workers": workers}
        if torch.cuda.is_available():
            result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        if clock.profile is not None:
            result["profile"] = clock.profile
        if keep_model is not None:
            keep_model.append(trainer.lightning_module.model)
        return result


def versus(report: Report, key: str, fast: str, slow: str) -> None:
    """The ratio of two figures already in the report, when both were taken."""
    with contextlib.suppress(KeyError, TypeError, ZeroDivisionError):
        ratio = report.data[fast]["train_frames_per_s"] / report.data[slow]["train_frames_per_s"]
        report.put(key, round(ratio, 3))


# ------------------------------------------------------------------------------------------------- tracking


def track_figure(model: Any, settings: Settings, data_dir: Path, precision: str) -> dict[str, Any]:
    """Tracking frames/s over every video in `data_dir`, decoding included, with the trained model."""
    import torch

    from dreem_trainer.config import validate
    from dreem_trainer.config.loader import deep_merge
    from dreem_trainer.data.discovery import discover
    from dreem_trainer.inference.run import track_videos

    split = deep_merge(settings.split, {"dir": {"path": str(data_dir)}})
    config = validate(deep_merge(WORKLOAD, {"model": settings.model, "dataset": {"train_dataset": split}}))
    test_split = config.dataset.train_dataset.model_copy(update={"mode": "val"})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device).eval()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    rounds = []
    with torch.inference_mode(), autocast:
        for _ in range(2):  # the first round warms the GPU kernels up
            started = time.perf_counter()
            results = track_videos(model, test_split, discover(test_split), config)
            rounds.append((time.perf_counter() - started, sum(len(np.unique(r.frame_indices)) for r in results)))
    seconds, frames = rounds[-1]
    return {"track_frames_per_s": round(frames / seconds, 2), "frames": frames, "precision": precision}


# -------------------------------------------------------------------------------------------------- reference

PEER_SPLIT = {"anchors": "thorax", "clip_length": 32, "crop_size": 128, "padding": 0, "chunk": True}
# ../shared/peer/configs/train.yaml, the reference's own benchmark configuration, on the GPU.
PEER_CONFIG = {
    "model": {"dropout": 0.1, "encoder_cfg": {"backend": "timm", "model_name": "resnet18", "pretrained": False}},
    "optimizer": {"name": "Adam", "lr": 0.0001},
    "dataset": {"train_dataset": PEER_SPLIT | {"seed": 0}, "val_dataset": PEER_SPLIT},
    "dataloader": {
        "train_dataloader": {"shuffle": True, "num_workers": 0},
        "val_dataloader": {"shuffle": False, "num_workers": 0},
    },
    "logging": {"logger_type": "CSVLogger", "name": "dreem_peer", "save_dir": "logs"},
    "checkpointing": {"dirpath": "models", "save_top_k": 1, "save_last": True},
    "trainer": {"devices": 1, "log_every_n_steps": 1, "enable_progress_bar": False, "profiler": "simple"},
}


def peer_figure(data_dir: Path, settings: Settings, epochs: int) -> dict[str, Any]:
    """DREEM 0.5.1's `dreem train` on the same clip and GPU; frames/s from Lightning's simple profiler (mean
    training batch plus mean wait for the next one), the way ../shared/peer/summarize.py reads it."""
    import yaml

    accelerator = "gpu" if settings.accelerator == "gpu" else "cpu"
    with tempfile.TemporaryDirectory() as out:
        work = Path(out)
        for split in ("train", "val"):
            copies(data_dir, "two_flies", 1, work / "data" / split)
        (work / "train.yaml").write_text(yaml.safe_dump(PEER_CONFIG))
        command = [
            sys.executable, "-c", "from dreem.cli import app; app()", "train", "data/train", "--val-dir", "data/val",
            "--crop-size", "128", "--clip-length", "32", "--epochs", str(epochs), "--lr", "0.0001",
            "--d-model", "128", "--nhead", "1", "--encoder-layers", "1", "--decoder-layers", "1",
            "--anchor", "thorax", "--gpu" if accelerator == "gpu" else "--no-gpu", "--logger", "CSVLogger",
            "--run-name", "dreem_peer", "--config", str(work / "train.yaml"),
        ]  # fmt: skip
        env = os.environ | {"WANDB_MODE": "disabled", "PYTHONWARNINGS": "ignore"}
        started = time.perf_counter()
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=240, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"dreem train exited {done.returncode}: {(done.stdout + done.stderr)[-1500:]}")
        profiles = list((work / "logs").glob("*/version_*/fit-profile.txt"))
        if not profiles:
            raise RuntimeError(f"no fit-profile.txt from the reference: {done.stdout[-800:]}")
        rows = _profile_rows(profiles[0].read_text())
        batch_s = rows["run_training_batch"][2]
        data_s = rows["[_TrainingEpochLoop].train_dataloader_next"][2]
        return {
            "train_frames_per_s": round(FRAMES_PER_CLIP / (batch_s + data_s), 2),
            "mean_batch_s": round(batch_s, 4),
            "mean_data_wait_s": round(data_s, 4),
            "steps": rows["run_training_batch"][1],
            "wall_s": round(wall, 1),
            "workload": "two_flies, crop 128, clip 32, resnet18, d_model 128, 1+1 layers, num_workers 0, fp32",
        }


def _profile_rows(text: str) -> dict[str, tuple[float, int, float]]:
    """Lightning's simple-profiler table: action -> (mean s, calls, total s)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.match(r"^[\d.]+$", cells[1]) and cells[2].isdigit():
            rows[cells[0]] = (float(cells[1]), int(cells[2]), float(cells[3]))
    return rows


# ------------------------------------------------------------------------------------------------------ main


@dataclass(frozen=True)
class Settings:
    """What one run of the bench trains: config fragments for `model` and the dataset split, and its sizes."""

    accelerator: str
    model: dict[str, Any]
    split: dict[str, Any]
    zfish_split: dict[str, Any]
    zfish: dict[str, int]
    """bench.zfish.make's size, frames and fish."""
    epochs: int
    fill_batch: int
    """Clips per step when filling the GPU."""
    fill_copies: int
    workers: int
    compile: bool


def settings_for(smoke: bool) -> Settings:
    """The reference workload (bench.common.WORKLOAD) on the GPU; `smoke`: a tiny backbone on CPU."""
    if smoke:
        return Settings(
            accelerator="cpu",
            model={"d_model": 32, "nhead": 2, "encoder_cfg": {"model_name": "test_resnet"}},
            split={"anchors": "thorax", "crop_size": 32, "clip_length": 4, "n_chunks": 2},
            zfish_split={"anchors": "center", "crop_size": 32, "clip_length": 4},
            zfish={"size": 256, "frames": 4, "fish": 3},
            epochs=2,
            fill_batch=2,
            fill_copies=1,
            workers=0,
            compile=False,  # inductor's C++ build of the encoder takes minutes on a small CPU
        )
    return Settings(
        accelerator="gpu",
        model=WORKLOAD["model"],
        split={"anchors": "thorax", "crop_size": 128, "clip_length": 32},
        zfish_split={"anchors": "center", "crop_size": 128, "clip_length": 32},
        zfish={"size": 3712, "frames": 32, "fish": 10},
        epochs=4,
        fill_batch=16,
        fill_copies=8,
        workers=6,
        compile=True,
    )


def environment(smoke: bool) -> dict[str, Any]:
    import lightning
    import torch

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cuda": torch.cuda.is_available(),
        "cpus": os.cpu_count(),
        "smoke": smoke,
    }
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / 2**30, 1)}
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "tf32")):
            torch.backends.cuda.matmul.allow_tf32 = True
            a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
            for _ in range(2):
                a @ a
            torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(5):
                a @ a
            torch.cuda.synchronize()
            info[f"{name}_matmul_tflops"] = round(5 * 2 * 8192**3 / (time.perf_counter() - started) / 1e12, 1)
            del a
    return info


def run(smoke: bool, budget_s: float, out: Path | None, peer: bool) -> dict[str, Any]:
    report = Report(out)
    settings = settings_for(smoke)
    epochs, workers = settings.epochs, settings.workers
    report.figure("environment", budget_s, 0, lambda: environment(smoke))
    precisions = ("32-true", "bf16-mixed")
    scratch = Path(tempfile.mkdtemp(prefix="dreem-gpu-bench-"))
    try:
        flies = DEMO_DATA
        models: list[Any] = []
        # two_flies at the reference workload: 4 clips of 32 frames, one clip per step; loading as the reference.
        for precision in precisions:
            report.figure(
                f"two_flies_ref_{precision}",
                budget_s,
                20,
                partial(
                    train_figure, settings, flies, precision=precision, batch=1, epochs=epochs, workers=0,
                    profile_steps=3, keep_model=models if precision == "bf16-mixed" else None,
                ),
            )  # fmt: skip
        versus(report, "two_flies_ref_bf16_over_fp32", "two_flies_ref_bf16-mixed", "two_flies_ref_32-true")
        # Filling the GPU: copies of the clip under other names, several clips per step (one encoder call).
        many = copies(flies, "two_flies", settings.fill_copies, scratch / "two_flies_copies")
        for precision in precisions:
            report.figure(
                f"two_flies_fill_{precision}",
                budget_s,
                30,
                partial(
                    train_figure, settings, many, precision=precision, batch=settings.fill_batch, epochs=epochs,
                    workers=0, profile_steps=1,
                ),
            )  # fmt: skip
        versus(report, "two_flies_fill_bf16_over_fp32", "two_flies_fill_bf16-mixed", "two_flies_fill_32-true")

        if models:
            report.figure(
                "tracking_two_flies_bf16-mixed",
                budget_s,
                15,
                lambda: track_figure(models[0], settings, flies, "bf16-mixed"),
            )
        if peer:
            report.figure("reference_dreem_0_5_1_two_flies", budget_s, 60, lambda: peer_figure(flies, settings, 3))
            for precision in precisions:
                versus(
                    report,
                    f"two_flies_ref_{precision}_over_reference",
                    f"two_flies_ref_{precision}",
                    "reference_dreem_0_5_1_two_flies",
                )

        # ten_zfish: one clip of 320 crops from 13.8-megapixel frames.
        zfish_dir = scratch / "ten_zfish"
        report.figure("ten_zfish_made", budget_s, 30, lambda: {"dir": str(zfish.make(zfish_dir, **settings.zfish))})
        zfish_settings = replace(settings, split=settings.zfish_split)
        if (zfish_dir / "ten_zfish.slp").exists():
            for precision in precisions:
                report.figure(
                    f"ten_zfish_ref_{precision}",
                    budget_s,
                    25,
                    partial(
                        train_figure, zfish_settings, zfish_dir, precision=precision, batch=1, epochs=epochs + 2,
                        workers=0, profile_steps=1,
                    ),
                )  # fmt: skip
            versus(report, "ten_zfish_ref_bf16_over_fp32", "ten_zfish_ref_bf16-mixed", "ten_zfish_ref_32-true")
            fish_copies = copies(zfish_dir, "ten_zfish", 4, scratch / "ten_zfish_copies")
            report.figure(
                "ten_zfish_fill_bf16-mixed",
                budget_s,
                40,
                lambda: train_figure(
                    zfish_settings, fish_copies, precision="bf16-mixed", batch=4, epochs=epochs, workers=0
                ),
            )

        # two_flies at the reference workload with loader workers. Each worker keeps its own clip cache and
        # takes whichever clip comes next, so until every worker has seen every clip some steps wait for a
        # decode: this figure shows how much. The others load in the main process, from its cache after the
        # first epoch (steady state).
        report.figure(
            "two_flies_ref_bf16-mixed_workers",
            budget_s,
            20,
            lambda: train_figure(
                settings, flies, precision="bf16-mixed", batch=1, epochs=epochs, workers=workers, profile_steps=3
            ),
        )

        # torch.compile of the encoder, measured last: its compilation takes tens of seconds.
        if settings.compile:
            report.figure(
                "two_flies_fill_bf16-mixed_compiled",
                budget_s,
                60,
                lambda: train_figure(
                    settings, many, precision="bf16-mixed", batch=settings.fill_batch, epochs=epochs,
                    workers=0, compile_encoder=True,
                ),
            )  # fmt: skip
            versus(
                report, "compiled_over_eager_bf16", "two_flies_fill_bf16-mixed_compiled", "two_flies_fill_bf16-mixed"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.put("done", True)
    return report.data


def default_out() -> Path | None:
    out = os.environ.get("OUT")
    return Path(out) / "gpu.json" if out else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--smoke", action="store_true", help="reduced run on CPU, to test the script")
    parser.add_argument("--budget-s", type=float, default=220.0, help="stop starting new figures after this")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default $OUT/gpu.json, else none)")
    parser.add_argument("--no-peer", action="store_true", help="skip the reference implementation")
    args = parser.parse_args(argv)
    peer = not args.no_peer and _importable("dreem")
    data = run(args.smoke, args.budget_s, args.out or default_out(), peer)
    print(json.dumps(data, indent=2, default=str))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
