"""Every metric the trainer logs and `dreem eval` reports, in one table, and the MOT counts behind them.

A `Metric` says which way is better (checkpoints and early stopping follow it) and where it is shown, so
logging, the per-epoch lines, the progress bar and the evaluation table read the same rows and cannot
disagree on a name.

Detections are the labelled instances themselves, so each prediction is matched to its own ground
truth; motmetrics then counts switches and solves the identity assignment behind IDF1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from dreem_trainer.config.run import EarlyStoppingConfig

Split = Literal["train", "val"]
Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Metric:
    """One row of the table: a quantity, logged once per split it is computed on as `<split>_<name>`."""

    name: str
    mode: Mode
    """Which way is better: the mode of a ModelCheckpoint or EarlyStopping that monitors it."""
    splits: tuple[Split, ...]
    """The splits training logs it for; tracking metrics need identities, so only validation has them."""
    progress_bar: bool = False
    """Shown live in the interactive progress bar."""
    epoch_line: bool = False
    """Printed in the one line per epoch of a non-interactive run (pod logs, CI)."""
    eval_table: bool = False
    """A column of the table `dreem eval` prints (metrics.json holds every tracking metric)."""

    def logged(self, split: Split) -> str:
        return f"{split}_{self.name}"


LOSS = Metric("loss", "min", splits=("train", "val"), progress_bar=True, epoch_line=True)
TRACKING_METRICS = (
    Metric("mota", "max", splits=("val",), epoch_line=True, eval_table=True),
    Metric("idf1", "max", splits=("val",), progress_bar=True, epoch_line=True, eval_table=True),
    Metric("num_switches", "min", splits=("val",), epoch_line=True, eval_table=True),
    Metric("precision", "max", splits=("val",), eval_table=True),
    Metric("recall", "max", splits=("val",), eval_table=True),
    # How many labelled instances validation scored: a check that it saw the data, more is not better,
    # but a checkpoint may still monitor it (as it could before this table), so it keeps a direction.
    Metric("num_objects", "max", splits=("val",)),
)
"""Computed from `TrackingCounts`, each name one of its fields or properties."""
METRICS = (LOSS, *TRACKING_METRICS)

_LIGHTNING_SUFFIXES = ("_epoch", "_step")
"""A value logged both per step and per epoch is also found under these names in Lightning's metrics."""


def metric_logged_as(name: str) -> Metric | None:
    """The table row behind a logged name (`val_idf1`, `train_loss_epoch`), None for a name not in the table."""
    for suffix in _LIGHTNING_SUFFIXES:
        name = name.removesuffix(suffix)
    return next((m for m in METRICS for split in m.splits if m.logged(split) == name), None)


DREEM_STOPPING_THRESHOLD = 1e-8
"""DREEM's default early_stopping.stopping_threshold, meant for its minimised val_loss."""


def effective_early_stopping(stopping: EarlyStoppingConfig, watched: str | None = None) -> EarlyStoppingConfig:
    """Early stopping with what the section leaves out filled in from the metric it watches (`watched`, else its
    monitor): the metric's own mode, and DREEM's stopping threshold when the metric is minimised (on a
    maximised one, 1e-8 would stop training at once). A threshold written as null stays off, as in DREEM."""
    metric = metric_logged_as(watched or stopping.monitor)
    mode = metric.mode if metric is not None else "min"
    if stopping.mode is not None and (watched is None or watched == stopping.monitor):
        mode = stopping.mode
    threshold = stopping.stopping_threshold
    if threshold is None and mode == "min" and "stopping_threshold" not in stopping.model_fields_set:
        threshold = DREEM_STOPPING_THRESHOLD
    return stopping.model_copy(update={"mode": mode, "stopping_threshold": threshold})


def split_of(name: str) -> Split | None:
    """The split a logged name belongs to, read from its prefix (also for names not in the table)."""
    return next((split for split in get_args(Split) if name.startswith(f"{split}_")), None)


def logged_names() -> list[str]:
    return [metric.logged(split) for metric in METRICS for split in metric.splits]


@dataclass(frozen=True)
class TrackingCounts:
    """Additive counts; the ratios are derived, so counts from clips or DDP ranks can be summed first.

    The field names are also motmetrics' names for these counts.
    """

    num_objects: int = 0
    num_misses: int = 0
    num_false_positives: int = 0
    num_switches: int = 0
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0

    @classmethod
    def count_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def __add__(self, other: TrackingCounts) -> TrackingCounts:
        return TrackingCounts(**{name: getattr(self, name) + getattr(other, name) for name in self.count_names()})

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def mota(self) -> float:
        errors = self.num_misses + self.num_false_positives + self.num_switches
        return 1.0 - errors / self.num_objects if self.num_objects else float("nan")

    @property
    def idf1(self) -> float:
        denominator = 2 * self.idtp + self.idfp + self.idfn
        return 2 * self.idtp / denominator if denominator else float("nan")

    @property
    def matches(self) -> int:
        return self.num_objects - self.num_misses

    @property
    def precision(self) -> float:
        detections = self.matches + self.num_false_positives
        return self.matches / detections if detections else float("nan")

    @property
    def recall(self) -> float:
        return self.matches / self.num_objects if self.num_objects else float("nan")

    def scores(self) -> dict[str, float]:
        """The value of each of TRACKING_METRICS, by name, in the table's order."""
        return {metric.name: float(getattr(self, metric.name)) for metric in TRACKING_METRICS}

    def summary(self) -> dict[str, float]:
        """The scores, then the remaining counts: what metrics.json and the per-video CSV hold."""
        scores = self.scores()
        return scores | {name: float(value) for name, value in self.as_dict().items() if name not in scores}


def frame_groups(frame_keys: npt.NDArray[Any]) -> list[npt.NDArray[np.int64]]:
    """The rows of each frame, frames in sorted order and rows in their order: one sort, where selecting each
    frame's rows by comparison scanned every row once per frame (minutes on an hour of video)."""
    if frame_keys.size == 0:
        return []
    order = np.argsort(frame_keys, kind="stable")
    ordered = frame_keys[order]
    return np.split(order, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1)


def distinct_per_frame(groups: list[npt.NDArray[np.int64]], tracks: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Track ids with a second instance of one id in a frame (a labelling slip) given an id of its own: the
    n-th repeat of id t in any frame becomes the same new id, above all others. CLEAR-MOT and IDF1 count
    objects by id per frame; repeated ids made motmetrics count an IDF1 above 1. `groups`: frame_groups."""
    ids = np.asarray(tracks, dtype=np.int64).copy()
    renamed: dict[tuple[int, int], int] = {}
    top = int(ids.max()) + 1 if ids.size else 0
    for rows in groups:
        here = ids[rows]
        if len(np.unique(here[here >= 0])) == np.count_nonzero(here >= 0):
            continue  # no id twice in this frame: the usual case, decided without a loop
        seen: dict[int, int] = {}
        for row in rows[here >= 0]:
            repeat = seen.get(int(ids[row]), 0)
            seen[int(ids[row])] = repeat + 1
            if repeat:
                key = (int(ids[row]), repeat)
                if key not in renamed:
                    renamed[key] = top + len(renamed)
                ids[row] = renamed[key]
    return ids


def tracking_counts(frame_keys: npt.ArrayLike, ground_truth: npt.ArrayLike, predicted: npt.ArrayLike) -> TrackingCounts:
    """Counts over instances given as parallel arrays: frame of each, its true track (-1: none), its predicted track."""
    import motmetrics

    groups = frame_groups(np.asarray(frame_keys))
    truth, guess = distinct_per_frame(groups, ground_truth), distinct_per_frame(groups, predicted)
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    for number, rows in enumerate(groups):
        gt_rows = rows[truth[rows] >= 0]
        pred_rows = rows[(guess[rows] >= 0) & (truth[rows] >= 0)]
        distances = np.where(gt_rows[:, None] == pred_rows[None, :], 0.0, np.nan)
        accumulator.update(truth[gt_rows].tolist(), guess[pred_rows].tolist(), distances, frameid=number)
    if accumulator.events.empty:
        return TrackingCounts()
    names = list(TrackingCounts.count_names())
    summary = motmetrics.metrics.create().compute(accumulator, metrics=names, name="clip")
    return TrackingCounts(**{name: int(summary[name].iloc[0]) for name in names})
