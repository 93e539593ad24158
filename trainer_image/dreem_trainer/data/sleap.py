"""SLEAP labels (`.slp`) through sleap-io: read with the video they label, written back with tracks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dreem_trainer.data.label_format import LabelFormat, Predictions
from dreem_trainer.data.records import UNTRACKED, Frame, Instance, LabelledVideo
from dreem_trainer.data.sources import DataError


class SleapLabels(LabelFormat):
    def detects(self, labels_path: str) -> bool:
        return labels_path.endswith(".slp")

    def read(self, labels_path: str, video_path: str) -> LabelledVideo:
        """The frames of the video that `video_path` names, in frame order."""
        labels = _load(labels_path)
        tracks = list(labels.tracks)
        frames = []
        for labelled_frame in sorted(labels.find(_matching_video(labels, labels_path, video_path)), key=_frame_idx):
            instances = tuple(
                Instance(
                    points=np.asarray(instance.numpy(), dtype=np.float64)[:, :2],
                    track=tracks.index(instance.track) if instance.track is not None else UNTRACKED,
                    index_in_frame=index,
                    score=float(getattr(instance, "score", 1.0)),  # user instances have none: 1, as in DREEM
                )
                for index, instance in enumerate(_instances(labelled_frame))
            )
            frames.append(Frame(frame_idx=_frame_idx(labelled_frame), instances=instances))
        return LabelledVideo(
            name=Path(video_path).stem,
            labels_path=labels_path,
            video_path=video_path,
            node_names=tuple(labels.skeletons[0].node_names) if labels.skeletons else (),
            edges=tuple((int(a), int(b)) for a, b in labels.skeletons[0].edge_inds) if labels.skeletons else (),
            frames=tuple(frames),
            track_names=tuple(str(track.name) for track in tracks),  # DREEM writes numbers
        )

    def videos_named(self, labels_path: str) -> list[str]:
        """Its videos' paths; an image sequence (a list of files) is not a video this reads."""
        labels = _load(labels_path)
        return [str(video.filename) for video in labels.videos if isinstance(video.filename, str)]

    def write(self, video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
        """A copy of the video's labels with predicted tracks, as `<output>/<video>.dreem_track.slp`.

        Tracks are named as DREEM names them: by their id, as a number (0, 1, ...), in order of first
        appearance; a detection left untracked (`max_tracks`) goes to a track named -1. Predicted instances get
        their tracking_score; frames flagged for review become suggestions. Instances the tracker did not see
        (dropped for a missing anchor) keep no track.
        """
        import sleap_io as sio

        labels = _load(video.labels_path)
        source = _matching_video(labels, video.labels_path, video.video_path)
        named: dict[int, Any] = {}
        for key in sorted(predictions.tracks):
            track = predictions.tracks[key]
            if track not in named:
                named[track] = sio.Track(name=track)  # a number, as DREEM writes it (sleap-io types it str)
        for labelled_frame in labels.find(source):
            replaced = _replaced_predictions(labelled_frame)  # paired before tracks change
            tracked = _instances(labelled_frame, replaced)
            superseded = list(replaced.values())
            for index, instance in enumerate(tracked):
                key = (_frame_idx(labelled_frame), index)
                instance.track = named[predictions.tracks[key]] if key in predictions.tracks else None
                if isinstance(instance, sio.PredictedInstance) and key in predictions.scores:
                    instance.tracking_score = predictions.scores[key]
            for prediction, user_instance in superseded:  # still paired with what replaced it, as SLEAP pairs them
                prediction.track = user_instance.track
        # The file's other videos keep their own tracks.
        elsewhere = {id(i.track): i.track for f in labels.labeled_frames for i in f.instances if i.track is not None}
        new = {id(track) for track in named.values()}
        labels.tracks = [*named.values(), *(t for t in labels.tracks if id(t) in elsewhere and id(t) not in new)]
        # The video that was tracked, by its absolute path: the input's own record may be relative to the input's
        # folder (or name another machine's file), and SLEAP and `dreem render` open what the output records.
        source.replace_filename(str(Path(video.video_path).resolve()), open=False)
        labels.suggestions = [*labels.suggestions, *(sio.SuggestionFrame(source, f) for f in predictions.review_frames)]
        target = self.written_to(video.video_path, output)
        sio.save_slp(labels, str(target), verbose=False)
        return target

    def written_to(self, video_path: str, output: Path) -> Path:
        return output / f"{Path(video_path).stem}.dreem_track.slp"


def _load(labels_path: str) -> Any:
    """The labels file, its videos left closed; one that sleap-io cannot read is named."""
    import sleap_io as sio

    try:
        return sio.load_slp(labels_path, open_videos=False)
    except Exception as error:
        raise DataError(f"{labels_path}: cannot read SLEAP labels ({error})") from error


def _frame_idx(labelled_frame: Any) -> int:
    return int(labelled_frame.frame_idx)


def _instances(labelled_frame: Any, replaced: dict[int, tuple[Any, Any]] | None = None) -> list[Any]:
    """The instances dreem tracks in a labelled frame, in the order `index_in_frame` counts: the
    user-labelled ones, then the predictions no user instance replaced (an animal the user did not correct
    is still there). `replaced`: the frame's `_replaced_predictions`, when the caller has them already."""
    replaced = _replaced_predictions(labelled_frame) if replaced is None else replaced
    return [
        *labelled_frame.user_instances,
        *(prediction for prediction in labelled_frame.predicted_instances if id(prediction) not in replaced),
    ]


def _replaced_predictions(labelled_frame: Any) -> dict[int, tuple[Any, Any]]:
    """The frame's predictions a user instance replaced, by id, each with that user instance. A user instance
    replaces the prediction it came from (`from_predicted`) and, in a tracked file, the one holding its track:
    both, since an untracked prediction corrected and then given a track is paired by the first alone
    (sleap-io's `unused_predictions` looks only at tracks once any is set)."""
    replaced: dict[int, tuple[Any, Any]] = {}
    for user in labelled_frame.user_instances:
        for prediction in labelled_frame.predicted_instances:
            same_track = prediction.track is not None and prediction.track is user.track
            if user.from_predicted is prediction or same_track:
                replaced.setdefault(id(prediction), (prediction, user))
    return replaced


def _matching_video(labels: Any, labels_path: str, video_path: str) -> Any:
    if len(labels.videos) == 1:
        return labels.videos[0]
    stem = Path(video_path).stem
    named = [video for video in labels.videos if Path(str(video.filename)).stem == stem]
    if len(named) != 1:
        listed = ", ".join(Path(str(video.filename)).name for video in labels.videos)
        raise DataError(
            f"{labels_path}: holds {len(labels.videos)} videos ({listed}) and none is named like {video_path}"
        )
    return named[0]
