"""Writes predicted identities back into the user's labels format, next to nothing they made."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from dreem_trainer.data.records import LabelledVideo


def write_tracks(
    video: LabelledVideo,
    frame_indices: npt.NDArray[np.int64],
    index_in_frame: npt.NDArray[np.int64],
    predicted: npt.NDArray[np.int64],
    output: Path,
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
    assigned = {(int(f), int(i)): int(t) for f, i, t in zip(frame_indices, index_in_frame, predicted, strict=True)}
    for labelled_frame in labels.find(source):
        chosen = labelled_frame.user_instances or labelled_frame.predicted_instances
        for index, instance in enumerate(chosen):
            track = assigned.get((int(labelled_frame.frame_idx), index), -1)
            instance.track = tracks.get(track)
    labels.tracks = list(tracks.values())
    target = output / f"{video.name}.dreem_track.slp"
    sio.save_slp(labels, str(target), verbose=False)
    return target
