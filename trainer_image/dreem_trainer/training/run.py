"""Runs a training job from a resolved configuration."""

from __future__ import annotations

import sys

from dreem_trainer.config import DreemConfig, dump_yaml


def run_training(config: DreemConfig) -> None:
    """Not built yet: prints the resolved configuration and says so, rather than pretending to train."""
    sys.stdout.write(dump_yaml(config))
    raise SystemExit("dreem train: the trainer is not built yet (issue 3); the configuration above is valid.")
