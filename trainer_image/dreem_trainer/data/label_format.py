"""`LabelFormat`: what dreem needs of a labels format. Each format recognises its files, reads them with
their video into a LabelledVideo, and writes predicted tracks back in the same format; `formats` lists them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from dreem_trainer.data.records import LabelledVideo

TrackAssignment = dict[tuple[int, int], int]
"""The predicted track of each tracked instance, by (frame_idx, index_in_frame). An instance the tracker
did not see (dropped for a missing anchor) has no entry; -1 is a detection it left untracked (`max_tracks`)."""


@dataclass(frozen=True)
class Predictions:
    """What tracking decided for one video, as the writers take it."""

    tracks: TrackAssignment
    scores: dict[tuple[int, int], float] = field(default_factory=dict)
    """tracking_score by (frame_idx, index_in_frame): the matched track's scaled score, -1 where the instance
    started a track."""
    review_frames: tuple[int, ...] = ()
    """Frames flagged as uncertain (`tracker.confidence_threshold`)."""


class LabelFormat(ABC):
    """One labels format. A writer numbers instances exactly as its reader did (`index_in_frame`), so the
    reader and the writer of a format share the code that orders instances and finds the video."""

    layout: str | None = None
    """What a folder laid out in this format looks like, for formats found without a labels suffix."""

    @abstractmethod
    def detects(self, labels_path: str) -> bool:
        """Whether `labels_path` is in this format."""

    @abstractmethod
    def read(self, labels_path: str, video_path: str) -> LabelledVideo:
        """The labelled frames of the video `video_path` names."""

    @abstractmethod
    def write(self, video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
        """Predicted tracks written into `output` at `written_to`; returns what was written. Formats without
        a place for them leave out the tracking scores and review frames."""

    @abstractmethod
    def written_to(self, video_path: str, output: Path) -> Path:
        """Where `write` puts the tracks of the video `video_path` names, known before tracking it."""

    def videos_named(self, labels_path: str) -> list[str]:
        """The video paths the labels file records, as written there (SLEAP keeps them); none by default."""
        return []

    def sources_in(self, folder: Path) -> list[tuple[Path, Path]]:
        """(labels, video) laid out in `folder` in this format's own way rather than paired by suffix."""
        return []
