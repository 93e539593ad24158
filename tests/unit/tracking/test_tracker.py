"""Each tracker option, on association matrices small enough to work out by hand.

The model is replaced by a scripted `Associate`: an instance's "features" are its identity, and the logit of
a query against a window instance is high for the same identity and low otherwise (or set per pair).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch

from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.tracking.assignment import assign, first_frame_tracks
from dreem_trainer.tracking.association import AssociationMatrix, TrackScores, box_iou, weigh_by_iou
from dreem_trainer.tracking.orientation import body_axis
from dreem_trainer.tracking.tracker import Detections, Tracker
from dreem_trainer.tracking.window import WindowInstance

IMAGE = (1000, 1000)


def frame(
    frame_idx: int,
    identities: Sequence[float],
    centers: Sequence[tuple[float, float]] | None = None,
    true_tracks: Sequence[int] | None = None,
    points: np.ndarray | None = None,
) -> Detections:
    """Instances whose features are their identity; boxes of 20 px around (x, y) centres (default: apart)."""
    centers = centers if centers is not None else [(100.0 * (i + 1), 100.0) for i in range(len(identities))]
    boxes = torch.tensor([[[y - 10, x - 10, y + 10, x + 10]] for x, y in centers], dtype=torch.float32)
    return Detections(
        frame_idx=frame_idx,
        features=torch.tensor(identities, dtype=torch.float32).reshape(-1, 1),
        boxes=boxes.reshape(-1, 1, 4),
        true_tracks=torch.tensor(true_tracks if true_tracks is not None else [-1] * len(identities)),
        image_size=IMAGE,
        points=points,
    )


Logit = Callable[[float, WindowInstance], float]


def scripted(logit: Logit) -> Callable[[Sequence[WindowInstance], Detections], torch.Tensor]:
    def associate(window: Sequence[WindowInstance], query: Detections) -> torch.Tensor:
        return torch.tensor([[logit(float(q), kept) for kept in window] for q in query.features[:, 0]])

    return associate


def same_identity(strength: float = 5.0) -> Logit:
    return lambda query, kept: strength if float(kept.features[0]) == query else -strength


def tracker(logit: Logit | None = None, node_names: Sequence[str] = (), **keys: object) -> Tracker:
    return Tracker(scripted(logit or same_identity()), TrackerConfig.model_validate(keys), node_names)


def run(t: Tracker, frames: list[Detections]) -> list[list[int]]:
    return [t.step(f).tracks.tolist() for f in frames]


# --- the association matrix ---------------------------------------------------------------------------


def test_softmax_is_per_window_frame_with_a_null_slot() -> None:
    matrix = AssociationMatrix(
        logits=torch.tensor([[0.0, 0.0, math.log(3.0)]]), frames=torch.tensor([4, 4, 6]), tracks=torch.tensor([0, 1, 0])
    )
    # Frame 4: softmax over [0, 0, null 0] -> 1/3 each; frame 6: [ln 3, null 0] -> 3/4.
    assert torch.allclose(matrix.probabilities(), torch.tensor([[1 / 3, 1 / 3, 3 / 4]]))
    scores = matrix.track_scores()
    assert scores.tracks.tolist() == [0, 1]
    assert torch.allclose(scores.scores, torch.tensor([[1 / 3 + 3 / 4, 1 / 3]]))
    assert scores.counts.tolist() == [2.0, 1.0] and scores.last.tolist() == [2, 1]


# --- thresholds and new tracks ------------------------------------------------------------------------


def scores_of(values: list[list[float]], counts: list[float], tracks: list[int] | None = None) -> TrackScores:
    k = len(counts)
    return TrackScores(
        torch.tensor(tracks or list(range(k))),
        torch.tensor(values),
        torch.tensor(counts),
        torch.arange(k),
    )


def test_mult_thresh_scales_the_threshold_by_the_tracks_instances() -> None:
    scores = scores_of([[1.0, 0.0]], counts=[3.0, 1.0])  # track 0 seen 3 times in the window
    with_mult = assign(scores, TrackerConfig(overlap_thresh=0.4), live_tracks=2, next_new_id=2)
    without = assign(scores, TrackerConfig(overlap_thresh=0.4, mult_thresh=False), live_tracks=2, next_new_id=2)
    assert with_mult.tracks.tolist() == [2]  # 1.0 is not above 0.4 * 3: a new track
    assert without.tracks.tolist() == [0]


def test_a_score_equal_to_the_threshold_starts_a_new_track() -> None:
    scores = scores_of([[0.5]], counts=[1.0])
    assert assign(scores, TrackerConfig(overlap_thresh=0.5), 1, 7).tracks.tolist() == [7]
    assert assign(scores, TrackerConfig(overlap_thresh=0.49), 1, 7).tracks.tolist() == [0]


def test_hungarian_matching_and_numbered_new_tracks() -> None:
    scores = scores_of([[0.1, 0.9], [0.8, 0.2], [0.05, 0.1]], counts=[1.0, 1.0], tracks=[3, 5])
    result = assign(scores, TrackerConfig(overlap_thresh=0.3), live_tracks=2, next_new_id=9)
    assert result.tracks.tolist() == [5, 3, 9]
    assert result.scores[2] == -1.0  # a new track has no tracking score


def test_max_tracks_keeps_weak_matches_and_leaves_extra_detections_untracked() -> None:
    scores = scores_of([[0.001, 0.002], [0.0, 0.0], [0.0, 0.0]], counts=[1.0, 1.0])
    capped = assign(scores, TrackerConfig(max_tracks=2), live_tracks=2, next_new_id=2)
    assert sorted(capped.tracks.tolist()) == [-1, 0, 1]
    uncapped = assign(scores, TrackerConfig(), live_tracks=2, next_new_id=2)
    assert uncapped.tracks.tolist() == [2, 3, 4]
    # Under the cap, one frame may start several tracks and pass it (live tracks are counted before the frame).
    under = assign(scores, TrackerConfig(max_tracks=3), live_tracks=2, next_new_id=2)
    assert under.tracks.tolist() == [2, 3, 4]


def test_temperature_sets_the_tracking_score() -> None:
    scores = scores_of([[2.0, 1.0]], counts=[1.0, 1.0])
    for temperature in (0.1, 1.0):
        result = assign(scores, TrackerConfig(temperature=temperature), 2, 2)
        expected = torch.log_softmax(torch.tensor([2.0, 1.0]) / temperature, 0)[0]
        assert result.tracks.tolist() == [0] and torch.isclose(result.scores[0], expected)


def test_confidence_threshold_flags_uncertain_frames() -> None:
    confident = scores_of([[5.0, 0.0], [0.0, 5.0]], counts=[1.0, 1.0])
    torn = scores_of([[1.0, 0.99], [0.99, 1.0]], counts=[1.0, 1.0])
    assert not assign(torn, TrackerConfig(), 2, 2).low_confidence  # 0: off
    assert assign(torn, TrackerConfig(confidence_threshold=0.5), 2, 2).low_confidence
    assert not assign(confident, TrackerConfig(confidence_threshold=0.5), 2, 2).low_confidence


def test_first_frame_keeps_the_labels_tracks_and_numbers_the_rest_after_them() -> None:
    assert first_frame_tracks(torch.tensor([1, 0])).tolist() == [1, 0]
    assert first_frame_tracks(torch.tensor([-1, -1, -1])).tolist() == [0, 1, 2]
    assert first_frame_tracks(torch.tensor([4, -1, 2, -1])).tolist() == [4, 5, 2, 6]
    assert first_frame_tracks(torch.tensor([1, 1, 0])).tolist() == [1, 2, 0]  # one track labelled twice


def test_new_track_ids_follow_the_largest_id_ever_used() -> None:
    # Track 7 (from the labels) ends after max_gap frames; a newcomer later still gets 8, not a reused id.
    t = tracker(window_size=1, max_gap=1)
    assert t.step(frame(0, [1.0, 2.0], true_tracks=[3, 7])).tracks.tolist() == [3, 7]
    assert t.step(frame(1, [1.0])).tracks.tolist() == [3]
    assert t.step(frame(2, [1.0, 9.0])).tracks.tolist() == [3, 8]


# --- the window ------------------------------------------------------------------------------------------


def test_window_size_is_per_track_and_tracks_outlive_it_without_max_gap() -> None:
    t = tracker(window_size=2)
    run(t, [frame(0, [1.0, 2.0]), *(frame(f, [1.0]) for f in range(1, 6))])
    kept = t.window.instances()
    # Identity 2 was last seen in frame 0 but keeps its instance; identity 1 keeps its last two.
    assert [(k.frame_idx, k.track) for k in kept] == [(0, 1), (4, 0), (5, 0)]
    assert t.step(frame(6, [1.0, 2.0])).tracks.tolist() == [0, 1]


def test_max_gap_ends_tracks_absent_that_long() -> None:
    frames = [frame(0, [1.0, 2.0]), *(frame(f, [1.0]) for f in range(1, 5)), frame(5, [1.0, 2.0])]
    assert run(tracker(window_size=2, max_gap=3), frames)[-1] == [0, 2]  # track 1 ended: identity 2 is new
    assert run(tracker(window_size=2, max_gap=10), frames)[-1] == [0, 1]
    # max_gap is never shorter than window_size.
    assert run(tracker(window_size=8, max_gap=3), frames)[-1] == [0, 1]


def test_frames_without_instances_age_the_tracks() -> None:
    empty = frame(1, [])
    frames = [frame(0, [1.0]), empty, empty, frame(3, [1.0], true_tracks=[5])]
    # Track 0 ended after two empty frames: the next frame starts a new track. Its id is a new one, not the
    # labels' (in dreem eval that would carry the true identity across the gap for free; in dreem track, on
    # untracked input, it would be 0 again, another animal's).
    assert run(tracker(window_size=1, max_gap=2), frames)[-1] == [1]
    assert run(tracker(window_size=1, max_gap=3), frames)[-1] == [0]
    untracked = [frame(0, [1.0]), empty, empty, frame(3, [7.0])]
    assert run(tracker(window_size=1, max_gap=2), untracked)[-1] == [1]


# --- spatial rules ---------------------------------------------------------------------------------------


def test_iou_modes_as_dreem_defines_them() -> None:
    traj = torch.tensor([[0.2, 0.9]])
    iou = torch.tensor([[0.6, 0.0]])
    assert torch.allclose(weigh_by_iou(traj, iou, "mult"), torch.tensor([[0.2 + 0.4 * 0.6, 0.9]]))
    assert torch.allclose(weigh_by_iou(traj, iou, "max"), torch.tensor([[0.6, 0.9]]))
    assert torch.equal(weigh_by_iou(traj, iou, None), traj)


def test_box_iou_averages_over_anchors_with_boxes() -> None:
    a = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [float("nan")] * 4]])
    b = torch.tensor([[[0.0, 5.0, 10.0, 15.0], [0.0, 0.0, 1.0, 1.0]]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150]]))


def undecided(query: float, kept: WindowInstance) -> float:
    """The model cannot tell identity 1 from identity 2."""
    return 0.0


def test_iou_decides_what_the_model_cannot() -> None:
    # Two animals swap identities in the features, but their boxes stay: overlap keeps each on its track.
    first = frame(0, [1.0, 2.0], centers=[(100, 100), (300, 100)])
    second = frame(1, [2.0, 1.0], centers=[(102, 100), (298, 100)])
    assert run(tracker(same_identity(), iou="mult"), [first, second])[-1] == [1, 0]  # the model wins
    assert run(tracker(undecided, iou="mult"), [first, second])[-1] == [0, 1]
    assert run(tracker(undecided, iou="max"), [first, second])[-1] == [0, 1]
    # Without iou, equal scores leave the choice to the Hungarian solver's order; all three see distinct inputs.
    scores = run(tracker(undecided, iou=None, overlap_thresh=0.5), [first, second])[-1]
    assert scores == [2, 3]  # 0.33 is under 0.5: both new


def test_max_center_dist_penalises_far_tracks_in_proportion() -> None:
    # Identity 2's features look like track 0, but its box is 400 px away from track 0's last box.
    def confused(query: float, kept: WindowInstance) -> float:
        return 2.0 if float(kept.features[0]) == 1.0 else 1.0

    first = frame(0, [1.0, 2.0], centers=[(100, 100), (500, 100)])
    second = frame(1, [2.0], centers=[(500, 100)])
    assert run(tracker(confused, iou=None), [first, second])[-1] == [0]
    assert run(tracker(confused, iou=None, max_center_dist=50), [first, second])[-1] == [1]
    # The penalty is soft: a multiplier small enough leaves the model's choice.
    weak = tracker(confused, iou=None, max_center_dist=50, distance_penalty_multiplier=0.01)
    assert run(weak, [first, second])[-1] == [0]


def test_center_distance_penalty_value() -> None:
    t = tracker(iou=None, max_center_dist=100.0, distance_penalty_multiplier=2.0)
    window = [
        WindowInstance(0, 0, torch.zeros(1), torch.tensor([[90.0, 90.0, 110.0, 110.0]])),
        WindowInstance(0, 1, torch.zeros(1), torch.tensor([[90.0, 390.0, 110.0, 410.0]])),
    ]
    query = frame(1, [0.0], centers=[(100, 100)])
    base = TrackScores(torch.tensor([0, 1]), torch.tensor([[0.6, 0.4]]), torch.ones(2), torch.tensor([0, 1]))
    scored = t._score(base, query, window, [None])
    diagonal = math.hypot(*IMAGE)
    excess = 300 / diagonal - 100 / diagonal  # track 1 is 300 px away, 200 px beyond reach
    scale = 0.5 / (excess / 2 + 1e-8)  # the row's mean |score| over its mean penalty
    assert torch.allclose(scored.scores, torch.tensor([[0.6, 0.4 - 2.0 * scale * excess]]))


FLY = ("head", "thorax", "abdomen")


def fly(x: float, y: float, angle_degrees: float) -> np.ndarray:
    direction = np.array([math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))])
    return np.stack([np.array([x, y]) + 10 * direction, np.array([x, y]), np.array([x, y]) - 12 * direction])


def test_max_angle_diff_penalises_turned_bodies() -> None:
    def confused(query: float, kept: WindowInstance) -> float:
        return 2.0 if float(kept.features[0]) == 1.0 else 1.8

    first = frame(0, [1.0, 2.0], points=np.stack([fly(100, 100, 0), fly(300, 100, 90)]))
    second = frame(1, [2.0], points=np.stack([fly(200, 100, 88)]))
    plain = tracker(confused, node_names=FLY, iou=None)
    assert run(plain, [first, second])[-1] == [0]
    front_back = {"front_nodes": ["head"], "back_nodes": ["thorax"]}
    for nodes in (front_back, {}):  # the front-back vector, or the principal axis
        config = TrackerConfig.model_validate({"iou": None, "max_angle_diff": 20, **nodes})
        angled = Tracker(scripted(confused), config, FLY)
        assert run(angled, [first, second])[-1] == [1]


def test_body_axis_rules() -> None:
    points = fly(0, 0, 30)
    axis = body_axis(points, FLY, ["head"], ["thorax"], None)
    assert axis is not None and torch.allclose(axis, torch.tensor([math.cos(math.pi / 6), math.sin(math.pi / 6)]))
    hidden = points.copy()
    hidden[0] = np.nan  # the head is hidden: fall back to the principal axis of what is visible
    assert body_axis(hidden, FLY, ["head"], ["thorax"], None) is not None
    # A centroid-only skeleton takes the axis from the crop: a bright horizontal bar points along x.
    crop = torch.zeros(3, 32, 32, dtype=torch.uint8)
    crop[:, 14:18, 4:28] = 255
    along = body_axis(np.zeros((1, 2)), ("centroid",), None, None, crop)
    assert along is not None and abs(float(along[0])) > 0.99
    assert body_axis(np.zeros((1, 2)), ("centroid",), None, None, None) is None


# --- accepted for DREEM's configs, no effect -------------------------------------------------------------


@pytest.mark.parametrize("key", [{"decay_time": 0.9}, {"use_vis_feats": False}, {"verbose": True}])
def test_keys_without_effect_in_dreem_change_nothing(key: dict[str, object]) -> None:
    def noisy(query: float, kept: WindowInstance) -> float:
        return float(np.sin(13 * query + 7 * float(kept.features[0]) + kept.frame_idx))

    frames = [frame(f, [float(i + f % 3) for i in range(3)]) for f in range(12)]
    with_key = Tracker(scripted(noisy), TrackerConfig.model_validate(key))
    assert run(tracker(noisy), frames) == run(with_key, frames)


# --- DREEM's single-detection defect, for DREEM's models ------------------------------------------------


def test_single_detection_defect_overwrites_the_oldest_window_features() -> None:
    seen: list[list[float]] = []

    def recording(window: Sequence[WindowInstance], query: Detections) -> torch.Tensor:
        seen.append([float(kept.features[0]) for kept in window])
        return torch.zeros(query.count, len(window))

    frames = [frame(0, [1.0, 2.0]), frame(1, [1.0, 2.0]), frame(2, [5.0]), frame(3, [1.0, 2.0])]
    for defect, oldest in ((False, 1.0), (True, 5.0)):
        seen.clear()
        run(Tracker(recording, TrackerConfig(), single_detection_defect=defect), frames)
        assert seen[0] == [1.0, 2.0]
        assert seen[1][0] == oldest  # frame 2 has one detection: with the defect it replaces the oldest's features
        assert seen[2][0] == oldest  # and the window keeps them
    # Right after a first frame, the window's instances were never encoded (DREEM encodes them with the query).
    seen.clear()
    run(Tracker(recording, TrackerConfig(), single_detection_defect=True), [frame(0, [1.0]), frame(1, [5.0])])
    assert seen == [[1.0]]


def test_a_clip_is_tracked_frame_by_frame_with_its_keypoints() -> None:
    from dreem_trainer.data.clip import Clip

    # Frame 0: identities 1 and 2; frame 1 (empty); frame 2: both again, identity 2 turned 88 degrees.
    points = torch.from_numpy(np.stack([fly(100, 100, 0), fly(300, 100, 90), fly(100, 100, 0), fly(300, 100, 2)]))
    clip = Clip(
        crops=torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
        boxes=torch.stack([frame(0, [1.0, 2.0]).boxes, frame(0, [1.0, 2.0]).boxes]).reshape(4, 1, 4),
        frame_ids=torch.tensor([0, 0, 2, 2]),
        track_ids=torch.tensor([-1, -1, -1, -1]),
        index_in_frame=torch.tensor([0, 1, 0, 1]),
        frame_indices=torch.tensor([10, 11, 12]),
        image_size=torch.tensor(IMAGE),
        video_index=0,
        points=points.float(),
    )
    features = torch.tensor([[1.0], [2.0], [1.0], [2.0]])
    lenient = {"max_angle_diff": 20, "iou": None, "overlap_thresh": 0.4, "angle_diff_penalty_multiplier": 0.1}
    config = TrackerConfig.model_validate(lenient)
    tracked = Tracker(scripted(same_identity()), config, FLY).track_clip(clip, features)
    assert tracked.tracks.tolist() == [0, 1, 0, 1]
    assert tracked.scores[:2].tolist() == [-1.0, -1.0] and bool((tracked.scores[2:] > -1.0).all())
    assert tracked.low_confidence.tolist() == [False, False, False]
    # With the turn penalised at full weight, identity 2 no longer joins its track.
    strict = TrackerConfig.model_validate({**lenient, "angle_diff_penalty_multiplier": 1.0})
    assert Tracker(scripted(same_identity()), strict, FLY).track_clip(clip, features).tracks.tolist()[3] == 2
