"""Writes predicted identities back into the user's labels format, next to nothing they made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from dreem_trainer.data.microscopy import CTC_RESULT_TRACKS, ctc_masks, is_ctc, numbered_tiffs
from dreem_trainer.data.point_tracks import write_tracks_csv
from dreem_trainer.data.records import LabelledVideo


def write_tracks(
    video: LabelledVideo,
    frame_indices: npt.NDArray[np.int64],
    index_in_frame: npt.NDArray[np.int64],
    predicted: npt.NDArray[np.int64],
    output: Path,
) -> Path:
    """Predicted tracks in the input's own format: SLEAP labels for SLEAP input, CTC results for a CTC
    sequence, a CSV of tracked points for TrackMate or ICY input. Nothing the user made is overwritten."""
    assigned = {(int(f), int(i)): int(t) for f, i, t in zip(frame_indices, index_in_frame, predicted, strict=True)}
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
    return write_sleap(video, assigned, predicted, output)


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
    (target / CTC_RESULT_TRACKS).write_text("\n".join(lines) + "\n")
    return target


def write_sleap(
    video: LabelledVideo, assigned: dict[tuple[int, int], int], predicted: npt.NDArray[np.int64], output: Path
) -> Path:
    """A copy of the video's labels with predicted tracks, as `<output>/<video>.dreem_track.slp`.

    Instances the tracker did not see (dropped for a missing anchor) keep no track.
    """
    import sleap_io as sio

    labels = sio.load_slp(video.labels_path, open_videos=False)
    source = (
        labels.videos[0]
        if len(labels.videos) == 1
        else next(v for v in labels.videos if Path(str(v.filename)).stem == Path(video.video_path).stem)
    )
    tracks = {int(t): sio.Track(name=f"track_{int(t)}") for t in np.unique(predicted) if t >= 0}
    for labelled_frame in labels.find(source):
        chosen = labelled_frame.user_instances or labelled_frame.predicted_instances
        for index, instance in enumerate(chosen):
            track = assigned.get((int(labelled_frame.frame_idx), index), -1)
            instance.track = tracks.get(track)
    labels.tracks = list(tracks.values())
    target = output / f"{video.name}.dreem_track.slp"
    sio.save_slp(labels, str(target), verbose=False)
    return target
