"""Tracking metrics (MOTA, IDF1, identity switches) from predicted and ground-truth identities.

Detections are the labelled instances themselves, so each prediction is matched to its own ground
truth; motmetrics then counts switches and solves the identity assignment behind IDF1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import numpy.typing as npt

COUNT_NAMES = ("num_objects", "num_misses", "num_false_positives", "num_switches", "idtp", "idfp", "idfn")


@dataclass(frozen=True)
class TrackingCounts:
    """Additive counts; the ratios are derived, so counts from clips or DDP ranks can be summed first."""

    num_objects: int = 0
    num_misses: int = 0
    num_false_positives: int = 0
    num_switches: int = 0
    idtp: int = 0
    idfp: int = 0
    idfn: int = 0

    def __add__(self, other: TrackingCounts) -> TrackingCounts:
        return TrackingCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def as_list(self) -> list[int]:
        return [getattr(self, name) for name in COUNT_NAMES]

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

    def summary(self) -> dict[str, float]:
        return {
            "mota": self.mota,
            "idf1": self.idf1,
            "num_switches": float(self.num_switches),
            "precision": self.precision,
            "recall": self.recall,
            **{key: float(value) for key, value in asdict(self).items() if key != "num_switches"},
        }


def tracking_counts(frame_keys: npt.ArrayLike, ground_truth: npt.ArrayLike, predicted: npt.ArrayLike) -> TrackingCounts:
    """Counts over instances given as parallel arrays: frame of each, its true track (-1: none), its predicted track."""
    import motmetrics

    frames, truth, guess = np.asarray(frame_keys), np.asarray(ground_truth), np.asarray(predicted)
    accumulator = motmetrics.MOTAccumulator(auto_id=False)
    for number, frame in enumerate(np.unique(frames)):
        here = frames == frame
        gt_rows = np.flatnonzero(here & (truth >= 0))
        pred_rows = np.flatnonzero(here & (guess >= 0) & (truth >= 0))
        distances = np.where(gt_rows[:, None] == pred_rows[None, :], 0.0, np.nan)
        accumulator.update(truth[gt_rows].tolist(), guess[pred_rows].tolist(), distances, frameid=number)
    if accumulator.events.empty:
        return TrackingCounts()
    summary = motmetrics.metrics.create().compute(accumulator, metrics=list(COUNT_NAMES), name="clip")
    return TrackingCounts(*(int(summary[name].iloc[0]) for name in COUNT_NAMES))
