"""Writes predicted identities back into the user's labels format, next to nothing they made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dreem_trainer.data.microscopy import ctc_masks, is_ctc, numbered_tiffs
from dreem_trainer.data.point_tracks import write_tracks_csv
from dreem_trainer.data.records import LabelledVideo


@dataclass(frozen=True)
class Predictions:
    """What tracking decided for one video, by (frame_idx, index_in_frame) of each tracked instance."""

    tracks: dict[tuple[int, int], int]
    """Track id; -1 for a detection left untracked (`tracker.max_tracks`)."""
    scores: dict[tuple[int, int], float] = field(default_factory=dict)
    """tracking_score: the matched track's scaled score, -1 where the instance started a track."""
    review_frames: tuple[int, ...] = ()
    """Frames flagged as uncertain (`tracker.confidence_threshold`)."""


def write_tracks(video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
    """Predicted tracks in the input's own format: SLEAP labels for SLEAP input, CTC results for a CTC
    sequence, a CSV of tracked points for TrackMate or ICY input. Nothing the user made is overwritten."""
    assigned = predictions.tracks
    if is_ctc(video.labels_path):
        return write_ctc_result(video, assigned, output)
    if video.labels_path.endswith((".csv", ".xml")):
        rows = [
            (assigned[(frame.frame_idx, instance.index_in_frame)], frame.frame_idx, *map(float, instance.points[0]))
            for frame in video.frames
            for instance in frame.instances
            if assigned.get((frame.frame_idx, instance.index_in_frame), -1) >= 0
        ]
        return write_tracks_csv(rows, output / f"{video.name}.dreem_tracks.csv")  # type: ignore[arg-type]
    return write_sleap(video, predictions, output)


def write_ctc_result(video: LabelledVideo, assigned: dict[tuple[int, int], int], output: Path) -> Path:
    """`<output>/<sequence>_RES/`: `mask<t>.tif` per frame, each cell's pixels holding its predicted track
    (from 1), and `res_track.txt` (`label begin end parent`; DREEM links cells, it does not detect
    divisions, so every parent is 0)."""
    import tifffile

    target = output / f"{video.name}_RES"
    target.mkdir(parents=True, exist_ok=True)
    masks = numbered_tiffs(ctc_masks(video.labels_path))
    digits = max(3, len(str(max(masks, default=0))))
    spans: dict[int, list[int]] = {}
    for frame in video.frames:
        mask = tifffile.imread(masks[frame.frame_idx])
        labels = [int(label) for label in np.unique(mask) if label != 0]
        lookup = np.zeros(int(mask.max()) + 1, dtype=np.uint16)
        for position, label in enumerate(labels):
            track = assigned.get((frame.frame_idx, position), -1)
            if track >= 0:
                lookup[label] = track + 1
                spans.setdefault(track + 1, []).append(frame.frame_idx)
        tifffile.imwrite(target / f"mask{frame.frame_idx:0{digits}d}.tif", lookup[mask], compression="zlib")
    lines = [f"{label} {min(frames)} {max(frames)} 0" for label, frames in sorted(spans.items())]
    (target / "res_track.txt").write_text("\n".join(lines) + "\n")
    return target


def write_sleap(video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
    """A copy of the video's labels with predicted tracks, as `<output>/<video>.dreem_track.slp`.

    Tracks are named as DREEM names them: by their id, as a number (0, 1, ...), in order of first appearance,
    and a detection left untracked (`max_tracks`) goes to a track named -1. Predicted instances get their
    tracking_score; frames flagged for review become suggestions. Instances the tracker did not see (dropped
    for a missing anchor) keep no track.
    """
    import sleap_io as sio

    labels = sio.load_slp(video.labels_path, open_videos=False)
    source = (
        labels.videos[0]
        if len(labels.videos) == 1
        else next(v for v in labels.videos if Path(str(v.filename)).stem == Path(video.video_path).stem)
    )
    tracks: dict[int, Any] = {}
    for key in sorted(predictions.tracks):
        track = predictions.tracks[key]
        if track not in tracks:
            tracks[track] = sio.Track(name=track)  # a number, as DREEM writes it (sleap-io types it str)
    for labelled_frame in labels.find(source):
        chosen = labelled_frame.user_instances or labelled_frame.predicted_instances
        for index, instance in enumerate(chosen):
            key = (int(labelled_frame.frame_idx), index)
            instance.track = tracks.get(predictions.tracks[key]) if key in predictions.tracks else None
            if isinstance(instance, sio.PredictedInstance) and key in predictions.scores:
                instance.tracking_score = predictions.scores[key]
    labels.tracks = list(tracks.values())
    labels.suggestions = [*labels.suggestions, *(sio.SuggestionFrame(source, f) for f in predictions.review_frames)]
    target = output / f"{video.name}.dreem_track.slp"
    sio.save_slp(labels, str(target), verbose=False)
    return target
