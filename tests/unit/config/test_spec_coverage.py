"""Every key the training-configuration document names exists in the schema and round-trips."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dreem_trainer.cli import app
from dreem_trainer.config import DreemConfig, load_config
from dreem_trainer.config.data import DataLoaderSplitConfig, DatasetSplitConfig, DirConfig
from dreem_trainer.config.issues import ConfigError
from dreem_trainer.config.model import (
    EncoderConfig,
    MLPConfig,
    ModelConfig,
    PositionalEmbeddingConfig,
    TemporalEmbeddingConfig,
)
from dreem_trainer.config.optimization import LossConfig, OptimizerConfig, SchedulerConfig
from dreem_trainer.config.run import CheckpointingConfig, EarlyStoppingConfig, LoggingConfig, TrainerConfig
from tests.conftest import SPEC_DOCUMENT, TEST_DATA

SPEC_EXAMPLE = TEST_DATA / "spec_example.yaml"

# Each heading of the document whose bullets list keys, and the section class that must hold them.
HEADING_SECTIONS: dict[str, type[Any]] = {
    "### Core Model Parameters": ModelConfig,
    "#### Positional Embedding (`pos`)": PositionalEmbeddingConfig,
    "**MLP Configuration**": MLPConfig,
    "#### Temporal Embedding (`temp`)": TemporalEmbeddingConfig,
    "### Visual Encoder Configuration (`encoder_cfg`)": EncoderConfig,
    "## Loss Configuration": LossConfig,
    "## Optimizer Configuration": OptimizerConfig,
    "## Scheduler Configuration": SchedulerConfig,
    "### Directory-based Input (Recommended)": DirConfig,
    "### File-based Input": DatasetSplitConfig,
    "### Dataset Parameters": DatasetSplitConfig,
    "## Dataloader Configuration": DataLoaderSplitConfig,
    "## Logging Configuration": LoggingConfig,
    "## Early Stopping Configuration": EarlyStoppingConfig,
    "## Checkpointing Configuration": CheckpointingConfig,
    "## Trainer Configuration": TrainerConfig,
}


def documented_keys(text: str) -> dict[str, list[str]]:
    """Bullet keys (`* `key` (...)`) of the document, grouped by the heading above them."""
    keys: dict[str, list[str]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith(("#", "**")):
            heading = next((h for h in HEADING_SECTIONS if line.startswith(h)), "")
        match = re.match(r"^\* `(\w+)` \(", line)
        if match and heading:
            keys.setdefault(heading, []).append(match.group(1))
    return keys


def example_key_paths(text: str) -> set[str]:
    """Key paths of the document's example YAML block (placeholders and comments ignored)."""
    block = text.split("## Example Configuration", 1)[1].split("```YAML", 1)[1].split("```", 1)[0]
    paths: set[str] = set()
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^(\s*)(\w+):", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        paths.add(".".join(k for _, k in stack))
    return paths


def leaf_paths(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        found: dict[str, Any] = {}
        for key, value in data.items():
            found.update(leaf_paths(value, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: data}


needs_spec = pytest.mark.skipif(not SPEC_DOCUMENT.is_file(), reason="the shared spec document is not beside the repo")


@needs_spec
def test_every_documented_key_is_in_the_schema() -> None:
    keys = documented_keys(SPEC_DOCUMENT.read_text())
    assert set(keys) == set(HEADING_SECTIONS), "a documented heading was not found"
    assert sum(len(names) for names in keys.values()) >= 70
    missing = [f"{h}: {k}" for h, names in keys.items() for k in names if k not in HEADING_SECTIONS[h].model_fields]
    assert missing == []


@needs_spec
def test_every_key_of_the_documents_example_is_in_the_filled_example() -> None:
    filled: set[str] = set()
    for path in leaf_paths(yaml.safe_load(SPEC_EXAMPLE.read_text())):
        parts = path.split(".")
        filled.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    documented = example_key_paths(SPEC_DOCUMENT.read_text())
    # Albumentations parameters in the example are illustrations of one transform, not schema keys.
    documented = {p for p in documented if ".augmentations." not in p}
    assert documented - filled == set()


def test_filled_example_round_trips_through_config_show(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["config", "show", "--config", str(SPEC_EXAMPLE)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    given = leaf_paths(yaml.safe_load(SPEC_EXAMPLE.read_text()))
    shown_leaves = leaf_paths(shown)
    for path, value in given.items():
        assert path in shown_leaves, f"{path} missing from config show"
        assert shown_leaves[path] == value, f"{path}: {shown_leaves[path]!r} != {value!r}"
    # The shown YAML is itself a valid config that shows the same way again.
    again = tmp_path / "shown.yaml"
    again.write_text(result.output)
    assert load_config(again) == load_config(SPEC_EXAMPLE)


def test_defaults_are_the_documented_ones() -> None:
    config = DreemConfig()
    assert (config.model.d_model, config.model.nhead, config.model.dropout) == (128, 1, 0.1)
    assert (config.model.activation, config.model.return_intermediate_dec, config.model.norm) == ("relu", True, False)
    assert config.model.encoder_cfg.backend == "timm" and config.model.encoder_cfg.in_chans == 3
    assert (config.loss.epsilon, config.loss.asso_weight, config.loss.neg_unmatched) == (1e-4, 1.0, False)
    assert (config.optimizer.name, config.optimizer.lr, config.optimizer.betas) == ("Adam", 1e-4, (0.9, 0.999))
    assert (config.optimizer.eps, config.optimizer.weight_decay) == (1e-8, 0.01)
    assert config.scheduler is not None and config.scheduler.name == "ReduceLROnPlateau"
    assert (config.scheduler.factor, config.scheduler.patience, config.scheduler.threshold) == (0.5, 5, 0.001)
    split = config.dataset.train_dataset
    assert (split.clip_length, split.chunk, split.padding, split.dilation_radius_px) == (32, True, 0, 0)
    assert config.early_stopping is not None
    assert (config.early_stopping.patience, config.early_stopping.min_delta) == (10, 0.1)
    assert (config.checkpointing.save_last, config.checkpointing.save_top_k) == (True, -1)
    assert config.checkpointing.every_n_epochs == 1 and config.checkpointing.dirpath is None
    assert (config.trainer.max_epochs, config.trainer.min_epochs, config.trainer.log_every_n_steps) == (20, 1, 1)
    # Where the document's default differs from DREEM's effective one, DREEM's wins (README, "Coming from DREEM").
    assert config.dataloader.train_dataloader.shuffle is True and config.dataloader.val_dataloader.shuffle is False


def test_blank_keys_take_defaults_and_null_sections_disable(write_yaml: Any) -> None:
    config = load_config(write_yaml("model:\n  d_model:\n  nhead:\nlogging: null\nearly_stopping: null\n"))
    assert config.model.d_model == 128 and config.model.nhead == 1
    assert config.logging is None and config.early_stopping is None


def test_optimizer_defaults_only_reach_optimizers_that_take_them(write_yaml: Any) -> None:
    sgd = load_config(write_yaml("optimizer:\n  name: SGD\n  momentum: 0.9\n")).optimizer
    assert sgd.kwargs() == {"lr": 1e-4, "momentum": 0.9}  # Adam's documented weight_decay is not SGD's
    adagrad = load_config(write_yaml("optimizer:\n  name: Adagrad\n  weight_decay: 0.001\n")).optimizer
    assert adagrad.kwargs() == {"lr": 1e-4, "weight_decay": 0.001}  # written: passed; eps: torch's 1e-10
    adam = load_config(write_yaml("optimizer:\n  lr: 0.001\n")).optimizer
    assert adam.kwargs() == {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    step = load_config(write_yaml("scheduler:\n  name: StepLR\n  step_size: 3\n")).scheduler
    assert step is not None and step.kwargs() == {"step_size": 3}


def test_plateau_keys_reach_other_schedulers_only_when_written(write_yaml: Any) -> None:
    # The documented mode and factor are ReduceLROnPlateau's: CyclicLR's mode and ConstantLR's factor mean
    # something else, so those classes get torch's defaults unless the user writes the key.
    import torch

    def scheduler_of(text: str) -> Any:
        section = load_config(write_yaml(text)).scheduler
        assert section is not None
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return getattr(torch.optim.lr_scheduler, section.name)(optimizer, **section.kwargs())

    cyclic = "scheduler:\n  name: CyclicLR\n  base_lr: 0.001\n  max_lr: 0.1\n"
    assert scheduler_of(cyclic).mode == "triangular"  # torch's default, not the plateau's "min"
    assert scheduler_of(cyclic + "  mode: triangular2\n").mode == "triangular2"
    assert scheduler_of("scheduler:\n  name: ConstantLR\n").factor == pytest.approx(1 / 3)
    assert scheduler_of("scheduler:\n  name: ConstantLR\n  factor: 1.0\n").factor == 1.0
    with pytest.raises(ConfigError, match=r"scheduler\.mode"):
        load_config(write_yaml("scheduler:\n  mode: triangular2\n"))  # ReduceLROnPlateau's is min or max
    with pytest.raises(ConfigError, match=r"scheduler\.factor"):
        load_config(write_yaml("scheduler:\n  factor: 1.0\n"))


@pytest.mark.parametrize(
    "text",
    [
        "optimizer:\n  name: SGD\n  momentum: 0.9\n",
        "scheduler:\n  name: StepLR\n  step_size: 2\n",
        "optimizer:\n  name: AdamW\n  amsgrad: true\nscheduler:\n  name: CosineAnnealingLR\n  T_max: 10\n",
        "scheduler:\n  name: ConstantLR\n",
        "scheduler:\n  name: CyclicLR\n  base_lr: 0.001\n  max_lr: 0.1\n  mode: exp_range\n",
    ],
)
def test_resolved_config_of_other_classes_validates_again(write_yaml: Any, text: str) -> None:
    shown = CliRunner().invoke(app, ["config", "show", "--config", str(write_yaml(text))])
    assert shown.exit_code == 0, shown.output
    again = CliRunner().invoke(app, ["config", "validate", str(write_yaml(shown.output, "shown.yaml"))])
    assert again.exit_code == 0, again.output
    # What was shown is what was meant: shown again, it prints the same (mode and thresholds filled in included).
    reshown = CliRunner().invoke(app, ["config", "show", "--config", str(write_yaml(shown.output, "again.yaml"))])
    assert reshown.output == shown.output
