"""`DreemConfig`: the whole training YAML, the one schema every entry point validates against."""

from __future__ import annotations

from pydantic import Field, model_validator

from dreem_trainer.config.base import Section
from dreem_trainer.config.data import DataLoaderConfig, DatasetConfig
from dreem_trainer.config.issues import key_error
from dreem_trainer.config.model import ModelConfig
from dreem_trainer.config.optimization import LossConfig, OptimizerConfig, SchedulerConfig
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


class DreemConfig(Section):
    """A DREEM training configuration, section for section as in the training-configuration document."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Transformer architecture and visual encoder.")
    loss: LossConfig = Field(default_factory=LossConfig, description="Association loss.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Training optimizer.")
    scheduler: SchedulerConfig | None = Field(
        default_factory=SchedulerConfig, description="Learning-rate scheduler; null for a constant learning rate."
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
