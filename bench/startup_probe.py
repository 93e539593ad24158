"""Child of bench/startup.py: runs a `dreem` console script and records when its first training step starts
and ends, then exits.

Usage: PYTHON -P bench/startup_probe.py OUT.json CONSOLE_SCRIPT [ARGS...]
Runs under either virtual environment (ours or the reference's), so it uses the standard library only and
imports nothing heavy itself: Lightning's Trainer module is patched only when the program imports it (an
import hook), so the probe adds no import the program would not make, and the same probe times both.
Each Trainer gets one more callback that writes time.time() at the first batch's start and end to OUT.json;
the process then exits, since the rest of training is not start-up.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import runpy
import sys
import time
from types import ModuleType
from typing import Any

# Ours imports lightning.pytorch, dreem-track 0.5.1 imports pytorch_lightning.
TRAINER_MODULES = ("lightning.pytorch.trainer.trainer", "pytorch_lightning.trainer.trainer")
CALLBACK_MODULES = {
    "lightning.pytorch.trainer.trainer": "lightning.pytorch.callbacks",
    "pytorch_lightning.trainer.trainer": "pytorch_lightning.callbacks",
}


def probe_callback(callbacks_module: str, out: str) -> Any:
    """A Lightning callback that records the first step's start and end, then ends the process."""
    base = importlib.import_module(callbacks_module).Callback

    class FirstStep(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.started: float | None = None

        def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
            if self.started is None:
                self.started = time.time()

        def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
            ended = time.time()
            with open(out, "w") as file:
                json.dump({"first_step_start": self.started, "first_step_end": ended}, file)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # the rest of the run is not start-up

    return FirstStep()


def patch_trainer(module: ModuleType, out: str) -> None:
    trainer = module.Trainer
    original = trainer.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Trainer's arguments are keyword-only in Lightning 2.
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), probe_callback(CALLBACK_MODULES[module.__name__], out)]
        original(self, *args, **kwargs)

    trainer.__init__ = __init__


class TrainerHook(importlib.abc.MetaPathFinder):
    """Patches Trainer once its module has run, whichever Lightning package the program uses."""

    def __init__(self, out: str) -> None:
        self.out = out

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in TRAINER_MODULES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module
        out = self.out

        def run_then_patch(module: ModuleType) -> None:
            exec_module(module)
            patch_trainer(module, out)

        loader.exec_module = run_then_patch  # type: ignore[method-assign]
        return spec


def main() -> None:
    out, script, *args = sys.argv[1:]
    sys.meta_path.insert(0, TrainerHook(out))
    # As if the script were run itself: its folder first on the path. (Python -P left bench/ off it: its
    # operator.py would shadow the standard library's.)
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
