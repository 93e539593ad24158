"""`DreemConfig`: the whole training YAML, the one schema every entry point validates against."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import Section
from dreem_trainer.config.data import DataLoaderConfig, DatasetConfig
from dreem_trainer.config.issues import key_error
from dreem_trainer.config.model import ModelConfig
from dreem_trainer.config.notices import no_effect
from dreem_trainer.config.optimization import LossConfig, OptimizerConfig, SchedulerConfig
from dreem_trainer.config.paths import check_path
from dreem_trainer.config.run import (
    CheckpointingConfig,
    EarlyStoppingConfig,
    LoggingConfig,
    StorageConfig,
    TrackerConfig,
    TrainerConfig,
)

CHANNELS_PER_CROP = 3
"""Crops are RGB (grey video is repeated on three channels) so that pretrained backbones apply."""


class MetricsConfig(Section):
    """DREEM's `metrics` key: which metrics `dreem eval` computes. DREEM 0.5.1 has one set, the MOT metrics."""

    train: list[str] | str | None = Field(None, description="Accepted for DREEM configs; training logs its own.")
    val: list[str] | str | None = Field(None, description="Accepted for DREEM configs; validation logs its own.")
    test: list[Literal["motmetrics"]] | Literal["all"] = Field(
        "all", description='"all" or [motmetrics]: the MOT metrics, which dreem eval always computes.'
    )

    @field_validator("test", mode="before")
    @classmethod
    def _one_metric_is_a_list(cls, test: object) -> object:
        return [test] if isinstance(test, str) and test != "all" else test


class RunnerConfig(Section):
    """DREEM's `runner` section (extra arguments of its LightningModule), accepted for its configs."""

    metrics: dict[str, Any] | None = Field(None, description="Metrics per stage.")
    test_save_path: str | None = Field(None, description="Where DREEM's test stage saves results.")
    save_frame_meta: bool | None = Field(None, description="Whether DREEM's test stage saves frame metadata.")


DREEM_FALLBACK_SCHEDULER = {
    "name": "ReduceLROnPlateau",
    "mode": "min",
    "factor": 0.5,
    "patience": 10,
    "threshold": 1e-4,
}
"""What DREEM schedules when the configuration's scheduler is null (torch's defaults for the rest)."""


class DreemConfig(Section):
    """A DREEM training configuration, section for section as in the training-configuration document."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Transformer architecture and visual encoder.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Association loss.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Training optimizer.")
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig,
        description="Learning-rate scheduler; null for DREEM's fallback, ReduceLROnPlateau with factor 0.5 and "
        "patience 10 on val_loss (ConstantLR with factor 1 keeps the learning rate constant).",
    )
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="Training, validation and test datasets.")
    dataloader: DataLoaderConfig = Field(default_factory=DataLoaderConfig, description="Data loading.")
    logging: LoggingConfig | None = Field(
        default_factory=LoggingConfig, description="Experiment logging; null to disable."
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        default_factory=EarlyStoppingConfig, description="Early stopping; null to disable."
    )
    checkpointing: CheckpointingConfig = Field(default_factory=CheckpointingConfig, description="Model checkpointing.")
    trainer: TrainerConfig = Field(default_factory=TrainerConfig, description="PyTorch Lightning Trainer.")
    tracker: TrackerConfig = Field(
        default_factory=TrackerConfig, description="Tracking used by validation metrics, dreem track and dreem eval."
    )
    storage: StorageConfig = Field(
        default_factory=StorageConfig, description="S3-compatible storage used by s3:// paths."
    )
    seed: int | None = Field(
        0, ge=0, description="Seed for weights, sampling and augmentation; null for an unseeded run."
    )
    ckpt_path: str | None = Field(
        None,
        description="Checkpoint dreem track and dreem eval track with (DREEM's inference key); --checkpoint wins.",
    )
    outdir: str | None = Field(
        None,
        description="Directory dreem track and dreem eval write to (DREEM's inference key); --output wins "
        '(default: "./results").',
    )
    save_frame_meta: bool = Field(
        False,
        description="DREEM's per-frame metadata file (features, crops, scores) from track and eval; dreem does not "
        "write it, so only false is accepted.",
    )
    metrics: MetricsConfig | None = Field(
        None, description="The metrics dreem eval computes (DREEM's key): test: all (the MOT metrics)."
    )
    runner: RunnerConfig | None = Field(
        None,
        description="Accepted for DREEM training configs; no effect (DREEM's test-stage settings).",
        exclude=True,
        json_schema_extra=no_effect(
            "DREEM uses it only in a test stage after training, which neither DREEM's nor dreem's train command runs"
        ),
    )
    view_batch: dict[str, Any] | None = Field(
        None,
        description="Accepted for DREEM configs; no effect.",
        exclude=True,
        json_schema_extra=no_effect("DREEM 0.5.1 never reads it"),
    )

    def checkpoint_dir(self) -> Path:
        """Where a local run writes its checkpoints, and where `resume: auto` looks for them:
        `checkpointing.dirpath`, else ./models/[group]/[name] (or ./models/[name])."""
        if self.checkpointing.dirpath:
            return Path(self.checkpointing.dirpath)
        name = self.logging.name if self.logging else "dreem_train"
        group = self.logging.group if self.logging else None
        return Path("models", group, name) if group else Path("models", name)

    @model_validator(mode="before")
    @classmethod
    def _null_scheduler_is_dreems_fallback(cls, data: Any) -> Any:
        if isinstance(data, dict) and "scheduler" in data and data["scheduler"] is None:
            return {**data, "scheduler": dict(DREEM_FALLBACK_SCHEDULER)}
        return data

    @field_validator("save_frame_meta")
    @classmethod
    def _no_frame_meta(cls, save: bool) -> bool:
        if save:
            raise ValueError(
                "dreem does not write DREEM's frame-metadata HDF5; the tracked labels and dreem eval's metrics "
                "files are written instead"
            )
        return save

    @field_validator("ckpt_path", "outdir")
    @classmethod
    def _inference_path(cls, path: str | None) -> str | None:
        return check_path(path) if path else path

    @model_validator(mode="after")
    def _encoder_sees_every_anchor(self) -> DreemConfig:
        splits = [self.dataset.train_dataset, self.dataset.val_dataset, self.dataset.test_dataset]
        for split in (split for split in splits if split is not None):
            expected = CHANNELS_PER_CROP * split.n_anchor_crops
            if self.model.encoder_cfg.in_chans != expected:
                raise key_error(
                    "model.encoder_cfg.in_chans",
                    f"{split.n_anchor_crops} anchor crop(s) per instance at {CHANNELS_PER_CROP} channels each "
                    f"need in_chans {expected} (dataset.{split.mode}_dataset.anchors is {split.anchors!r})",
                    self.model.encoder_cfg.in_chans,
                )
        return self
