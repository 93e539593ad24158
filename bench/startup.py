"""Start-up to the first training step: `dreem train` beside dreem-track 0.5.1's `dreem train`, same clip.

Both train on the bundled clip (examples/demo/data, two_flies: 128 frames, 2 flies), one epoch, crop 128,
clip 32, resnet18, d_model 128, 1+1 layers, on the CPU. Ours runs examples/demo/train.yaml with `make demo`'s
overrides; the reference runs as ../shared/peer/run.sh runs it. Each is timed by the same clock the same
way: time.time() in this process just before the child is spawned, to time.time() in the child at the end
of its first training step (and, also reported, at its start: the first batch has been loaded then).
bench/startup_probe.py wraps each console script to take that time and end the process there.
Rounds rotate which goes first; the figures are medians.
--baseline DIR times another checkout of ours too (e.g. main before a change), in the same rounds.
Prints JSON. Usage: python -m bench.startup [--rounds N] [--no-peer] [--baseline DIR]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import DEMO_DATA, PEER_HOME, REPO, SHARED, median

PROBE = REPO / "bench" / "startup_probe.py"
PEER_PYTHON = PEER_HOME / "venv" / "bin" / "python"
PEER_DREEM = PEER_HOME / "venv" / "bin" / "dreem"
PEER_CONFIG = SHARED / "peer" / "configs" / "train.yaml"
# run.sh's environment, for both.
QUIET = {"WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}


Launch = tuple[list[str], dict[str, str]]


def ours(out: Path, tree: Path = REPO) -> Launch:
    """`make demo`'s training, with the code of checkout `tree` (this one, or a --baseline)."""
    data = str(DEMO_DATA)
    command = [
        sys.executable,
        "-P",
        str(PROBE),
        str(out / "probe.json"),
        str(Path(sys.executable).parent / "dreem"),
        "train",
        "--config",
        str(REPO / "examples" / "demo" / "train.yaml"),
        "--set",
        f"dataset.train_dataset.dir.path={data}",
        "--set",
        f"dataset.val_dataset.dir.path={data}",
        "--set",
        f"checkpointing.dirpath={out}/models",
        "--set",
        f"logging.save_dir={out}/logs",
        "--set",
        "trainer.max_epochs=1",
    ]
    # That checkout's code, whichever checkout the virtual environment was installed from.
    path = os.pathsep.join([str(tree / "trainer_image"), str(tree / "operator"), str(tree)])
    return command, os.environ | QUIET | {"PYTHONPATH": path}


def reference(out: Path) -> Launch:
    data = str(DEMO_DATA)
    command = [
        str(PEER_PYTHON),
        "-P",
        str(PROBE),
        str(out / "probe.json"),
        str(PEER_DREEM),
        "train",
        data,
        "--val-dir",
        data,
        "--crop-size",
        "128",
        "--clip-length",
        "32",
        "--epochs",
        "1",
        "--lr",
        "0.0005",
        "--d-model",
        "128",
        "--nhead",
        "1",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--anchor",
        "thorax",
        "--no-gpu",
        "--logger",
        "CSVLogger",
        "--run-name",
        "startup",
        "--config",
        str(PEER_CONFIG),
        "--set",
        f"dataset.train_dataset.dir.path={data}",
        "--set",
        f"dataset.val_dataset.dir.path={data}",
        "--set",
        f"logging.save_dir={out}/logs",
        "--set",
        f"checkpointing.dirpath={out}/models",
    ]
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return command, env | QUIET


def timed(name: str, launch: Callable[[Path], Launch]) -> dict[str, float]:
    """Seconds from spawning the child to its first step's start and end, and its CPU seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        command, env = launch(out)
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        spawned = time.time()
        result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=False)
        cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        probe = out / "probe.json"
        if result.returncode != 0 or not probe.exists():
            raise RuntimeError(f"{name} did not reach a training step:\n{result.stderr[-3000:]}")
        times = json.loads(probe.read_text())
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "to_first_step_start_s": times["first_step_start"] - spawned,
        "to_first_step_end_s": times["first_step_end"] - spawned,
        "cpu_s": cpu,
    }


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "to_first_step_end_s_median": median([r["to_first_step_end_s"] for r in runs]),
        "to_first_step_start_s_median": median([r["to_first_step_start_s"] for r in runs]),
        "runs_to_first_step_end_s": [round(r["to_first_step_end_s"], 2) for r in runs],
        # CPU seconds (user + system) to the first step's end: less sensitive than wall time to a busy machine.
        "cpu_s_median": median([r["cpu_s"] for r in runs]),
    }


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    baseline = Path(sys.argv[sys.argv.index("--baseline") + 1]).resolve() if "--baseline" in sys.argv else None
    contenders: dict[str, Callable[[Path], Launch]] = {"ours": ours}
    if "--no-peer" not in sys.argv and PEER_DREEM.exists() and PEER_CONFIG.exists():
        contenders["reference"] = reference
    if baseline is not None:
        contenders["baseline"] = partial(ours, tree=baseline)
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        # Rotate which goes first, so none always finds the page cache another warmed.
        for name in names[index % len(names) :] + names[: index % len(names)]:
            runs[name].append(timed(name, contenders[name]))
    result: dict[str, Any] = {
        "workload": "dreem train on examples/demo/data (two_flies, 128 frames), 1 epoch, crop 128, clip 32, "
        "resnet18, d_model 128, 1+1 layers, CPU; seconds from spawn to the first training step's end (and start)",
        "rounds": rounds,
        "ours": summary(runs["ours"]),
    }
    if baseline is not None:
        result["baseline"] = {"tree": str(baseline), **summary(runs["baseline"])}
    if "reference" in runs:
        result["reference"] = summary(runs["reference"])
        result["ratio_to_first_step_end"] = (
            result["ours"]["to_first_step_end_s_median"] / result["reference"]["to_first_step_end_s_median"]
        )
        result["ratio_to_first_step_start"] = (
            result["ours"]["to_first_step_start_s_median"] / result["reference"]["to_first_step_start_s_median"]
        )
        result["ratio_cpu_s"] = result["ours"]["cpu_s_median"] / result["reference"]["cpu_s_median"]
    result["load_average_before"] = list(load_before)
    result["load_average_after"] = list(os.getloadavg())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
