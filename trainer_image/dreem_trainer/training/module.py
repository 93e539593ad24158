"""`DreemModule`: the LightningModule that trains a GlobalTrackingTransformer on Clips."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from dreem_trainer.config import DreemConfig
from dreem_trainer.data.clip import Clip
from dreem_trainer.models.checkpoint import LAYOUT, LAYOUT_KEY
from dreem_trainer.models.encoder import batchnorms
from dreem_trainer.models.gtr import AssociationOutput, GlobalTrackingTransformer
from dreem_trainer.tracking.metrics import (
    LOSS,
    TRACKING_METRICS,
    Metric,
    Split,
    TrackingCounts,
    split_of,
    tracking_counts,
)
from dreem_trainer.tracking.tracker import Tracker
from dreem_trainer.training.loss import AssociationLoss

TRAIN_LOSS, VAL_LOSS = LOSS.logged("train"), LOSS.logged("val")


def epoch_value_name(metric: Metric, split: Split) -> str:
    """Where Lightning keeps a metric's value for a whole epoch: the training loss is logged every step as
    well, so its epoch mean carries Lightning's `_epoch` suffix."""
    name = metric.logged(split)
    return f"{name}_epoch" if name == TRAIN_LOSS else name


def clip_offsets(clip: Clip) -> torch.Tensor:
    """Each instance's frame number relative to the clip's first frame, so gaps in labels keep their length."""
    return clip.frame_indices[clip.frame_ids] - clip.frame_indices[0]


class DreemModule(pl.LightningModule):
    """One clip is one association problem: every instance queries every other frame of the clip.

    The configuration is stored in the checkpoint as plain data, so `dreem track` rebuilds the same model.
    """

    def __init__(self, config: dict[str, Any], scheduler_monitor: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()  # `hyper_parameters.config`: what models.checkpoint rebuilds from
        self.config = DreemConfig.model_validate(config)
        scheduler = self.config.scheduler
        self.scheduler_monitor = scheduler_monitor or scheduler.monitor
        self.model = GlobalTrackingTransformer(self.config.model)
        if self.config.model.compile:
            # In place, so the state_dict keeps its names and checkpoints load without torch.compile.
            self.model.visual_encoder.feature_extractor.compile()
        self.loss = AssociationLoss(self.config.loss)
        self._val_counts = TrackingCounts()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[LAYOUT_KEY] = LAYOUT

    def forward(self, clip: Clip) -> AssociationOutput:
        return self.model(clip.crops, clip.boxes, clip_offsets(clip), clip.image_size)  # type: ignore[no-any-return]

    def transfer_batch_to_device(self, batch: list[Clip], device: torch.device, dataloader_idx: int) -> list[Clip]:
        # Copies from pinned memory (the loader pins on GPUs) do not wait for the GPU to catch up.
        non_blocking = device.type == "cuda"
        return [clip.to(device, non_blocking=non_blocking) for clip in batch]

    def _batch_loss(self, batch: list[Clip], features: list[torch.Tensor] | None = None) -> torch.Tensor:
        """The batch's mean association loss; `features`: the clips' visual features, when already encoded."""
        features = self._encode(batch) if features is None else features
        losses = [
            self.loss(
                self.model.associate(clip_features, clip.boxes, clip_offsets(clip), clip.image_size).matrices,
                clip.frame_ids,
                clip.track_ids,
            )
            for clip, clip_features in zip(batch, features, strict=True)
        ]
        return torch.stack(losses).mean()

    def _encode(self, batch: list[Clip]) -> list[torch.Tensor]:
        """Each clip's visual features, from one encoder call per crop shape rather than one per clip: with
        `batch_size` > 1 that is one large convolution batch, which is what keeps a GPU busy."""
        features: list[torch.Tensor | None] = [None] * len(batch)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for position, clip in enumerate(batch):
            by_shape.setdefault(tuple(clip.crops.shape[1:]), []).append(position)
        for positions in by_shape.values():
            encoded = self.model.visual_encoder(torch.cat([batch[p].crops for p in positions]))
            for position, part in zip(
                positions, encoded.split([batch[p].num_instances for p in positions]), strict=True
            ):
                features[position] = part
        return [part for part in features if part is not None]

    def statistics_forward(self, batch: list[Clip], crops: int) -> None:
        """The visual encoder, in train mode, over at most `crops` of the batch's crops (spread evenly over its
        clips and frames; each crop size at least 2, which a BatchNorm needs, and all of a size with fewer):
        what PreciseBatchNorm measures BatchNorm statistics with (the transformer has none). Crop sizes go
        through one call each, weighted by their crops in the running averages."""
        by_shape: dict[tuple[int, ...], list[torch.Tensor]] = {}
        for clip in batch:
            by_shape.setdefault(tuple(clip.crops.shape[1:]), []).append(clip.crops)
        total = sum(part.shape[0] for parts in by_shape.values() for part in parts)
        if total == 0:
            return
        norms = batchnorms(self.model.visual_encoder)
        seen = 0
        for parts in by_shape.values():
            every = torch.cat(parts)
            share = max(min(every.shape[0], 2), round(crops * every.shape[0] / total))
            if every.shape[0] > share:
                every = every[torch.linspace(0, every.shape[0] - 1, share, device=every.device).round().long()]
            if every.shape[0] == 0:
                continue
            seen += every.shape[0]
            for norm in norms:
                norm.momentum = every.shape[0] / seen  # a running average over crops, not over calls
            self.model.visual_encoder(every)

    def training_step(self, batch: list[Clip], batch_idx: int) -> torch.Tensor:
        loss = self._batch_loss(batch)
        self.log(
            TRAIN_LOSS,
            loss,
            batch_size=len(batch),
            prog_bar=LOSS.progress_bar,
            on_step=True,
            on_epoch=True,  # so Lightning also keeps the epoch's mean: see epoch_value_name
            sync_dist=True,
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_counts = TrackingCounts()

    def validation_step(self, batch: list[Clip], batch_idx: int) -> None:
        # One encoder pass serves the loss and the tracking metrics (in eval mode the features are the same):
        # the encoder is most of a validation's cost.
        features = self._encode(batch)
        loss = self._batch_loss(batch, features)
        self.log(VAL_LOSS, loss, batch_size=len(batch), prog_bar=LOSS.progress_bar, on_epoch=True, sync_dist=True)
        tracker = Tracker.for_model(self.model, self.config.tracker)
        for clip, clip_features in zip(batch, features, strict=True):
            tracker.reset(node_names=clip.node_names)  # the body axes dreem track uses: see Clip.node_names
            predicted = tracker.track_clip(clip, clip_features).tracks
            self._val_counts += tracking_counts(clip.frame_ids.cpu(), clip.track_ids.cpu(), predicted.cpu())

    def on_validation_epoch_end(self) -> None:
        names = TrackingCounts.count_names()
        counts = self._val_counts.as_dict()
        summed = torch.tensor([counts[name] for name in names], dtype=torch.float64, device=self.device)
        # Counts are summed over ranks before the ratios are taken: every rank then logs the same values.
        summed = self.trainer.strategy.reduce(summed, reduce_op="sum")
        total = TrackingCounts(**{name: int(value) for name, value in zip(names, summed.tolist(), strict=True)})
        if total.num_objects:
            scores = total.scores()
            for metric in TRACKING_METRICS:
                self.log(metric.logged("val"), scores[metric.name], prog_bar=metric.progress_bar)

    def configure_optimizers(self) -> Any:
        optimizer_config = self.config.optimizer
        optimizer = getattr(torch.optim, optimizer_config.name)(self.parameters(), **optimizer_config.kwargs())
        scheduler_config = self.config.scheduler
        scheduler = getattr(torch.optim.lr_scheduler, scheduler_config.name)(optimizer, **scheduler_config.kwargs())
        # A plateau scheduler watching a validation metric steps when validation runs, every
        # check_val_every_n_epoch epochs: in the epochs between, the metric does not exist yet. Other schedulers
        # watch nothing and step every epoch.
        every = self.config.trainer.check_val_every_n_epoch
        watches_validation = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and (
            split_of(self.scheduler_monitor) == "val"
        )
        frequency = every if every and watches_validation else 1
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.scheduler_monitor,
                "interval": "epoch",
                "frequency": frequency,
            },
        }
