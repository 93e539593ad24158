"""The labels formats dreem reads and writes, in one table: discovery finds sources through it, datasets
read them and `dreem track` writes its tracks back in the input's own format."""

from __future__ import annotations

import os
from pathlib import Path

from dreem_trainer.data.label_format import LabelFormat, Predictions
from dreem_trainer.data.microscopy import CtcLabels
from dreem_trainer.data.point_tracks import IcyXml, TrackMateCsv, TrackMateXml
from dreem_trainer.data.records import LabelledVideo
from dreem_trainer.data.sleap import SleapLabels
from dreem_trainer.data.sources import DataError

LABEL_FORMATS: tuple[LabelFormat, ...] = (SleapLabels(), CtcLabels(), TrackMateXml(), IcyXml(), TrackMateCsv())
"""In the order they are tried; the first that detects a labels file reads it and writes its tracks."""


def format_of(labels_path: str) -> LabelFormat:
    for label_format in LABEL_FORMATS:
        if label_format.detects(labels_path):
            return label_format
    raise DataError(f"{labels_path}: no reader for labels ending in {os.path.splitext(labels_path)[1]!r}")


def write_tracks(video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
    """Predicted tracks in the input's own format: SLEAP labels for SLEAP input, CTC results for a CTC
    sequence, a CSV of tracked points for TrackMate or ICY input. Nothing the user made is overwritten."""
    return format_of(video.labels_path).write(video, predictions, output)


def laid_out_sources(folder: Path) -> list[tuple[Path, Path]]:
    """(labels, video) of the formats that lay sources out in folders of their own, found in `folder`."""
    return [source for label_format in LABEL_FORMATS for source in label_format.sources_in(folder)]


def layouts() -> list[str]:
    """What those folders look like, for an error when a directory matches nothing."""
    return [label_format.layout for label_format in LABEL_FORMATS if label_format.layout is not None]
