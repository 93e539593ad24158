"""Which reader opens a labels file and which opens its frames, chosen by the files themselves.

Kept free of torch, so `dreem render` reads tracked files without loading the training stack.
"""

from __future__ import annotations

import os

from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.data.microscopy import TIFF_SUFFIXES, TiffReader, is_ctc, read_ctc
from dreem_trainer.data.point_tracks import read_trackmate_csv, read_xml_tracks
from dreem_trainer.data.records import LabelledVideo
from dreem_trainer.data.sources import DataError, MediaReader, VideoReader, read_sleap


def read_video(pair: SourcePair) -> LabelledVideo:
    if pair.labels_path.endswith(".slp"):
        return read_sleap(pair.labels_path, pair.video_path)
    if is_ctc(pair.labels_path):
        return read_ctc(pair.labels_path, pair.video_path)
    if pair.labels_path.endswith(".xml"):
        return read_xml_tracks(pair.labels_path, pair.video_path)
    if pair.labels_path.endswith(".csv"):
        return read_trackmate_csv(pair.labels_path, pair.video_path)
    raise DataError(f"{pair.labels_path}: no reader for labels ending in {os.path.splitext(pair.labels_path)[1]!r}")


def is_tiff_video(video_path: str) -> bool:
    """TIFF frames: a folder of numbered TIFFs or one multi-page stack."""
    return os.path.isdir(video_path) or video_path.lower().endswith(TIFF_SUFFIXES)


def open_reader(video_path: str) -> VideoReader:
    """TIFF frames (a folder of them, or one stack) through tifffile; other media through sleap-io."""
    if is_tiff_video(video_path):
        return TiffReader(video_path)
    return MediaReader(video_path)
