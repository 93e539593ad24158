"""Our tracker, fed what DREEM 0.5.1's tracker was fed, decides what DREEM decided.

`tests/data/dreem/tracker_parity.pt` holds DREEM's own tracker run frame by frame on sleap/two_flies with the
shared DREEM checkpoint, in scenarios that exercise each tracker option (how it was made:
tests/data/dreem/README.md). Our tracker gets the same instances in the same order; in place of the model,
each association replays DREEM's logits, after checking that our window holds the same instances in the same
column order as DREEM's did. Track ids, tracking scores and review flags must then equal DREEM's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from dreem_trainer.config.run import TrackerConfig
from dreem_trainer.tracking.tracker import Detections, Tracker
from dreem_trainer.tracking.window import WindowInstance

FIXTURE = Path(__file__).parents[2] / "data" / "dreem" / "tracker_parity.pt"
RECORDED = torch.load(FIXTURE, weights_only=True)


class Replay:
    """DREEM's logits, call by call, for the window DREEM built."""

    def __init__(self, scenario: dict[str, Any]) -> None:
        sizes = scenario["window_sizes"].tolist()
        self.frames = iter(torch.split(scenario["window_frames"], sizes))
        self.tracks = iter(torch.split(scenario["window_tracks"], sizes))
        self.features = iter(torch.split(scenario["window_features"], sizes)) if "window_features" in scenario else None
        self.logits = scenario["logits"]
        self.calls = len(sizes)

    def __call__(self, window: Sequence[WindowInstance], query: Detections) -> torch.Tensor:
        self.calls -= 1
        layout = [(kept.frame_idx, kept.track) for kept in window]
        expected = list(zip(next(self.frames).tolist(), next(self.tracks).tolist(), strict=True))
        assert layout == expected, f"frame {query.frame_idx}: window {layout}, DREEM's {expected}"
        if self.features is not None:
            ours = torch.stack([kept.features for kept in window])
            assert torch.allclose(ours, next(self.features), atol=1e-4), f"frame {query.frame_idx}: window features"
        size = query.count * len(window)
        logits: torch.Tensor = self.logits[:size].reshape(query.count, len(window))
        self.logits = self.logits[size:]
        return logits


def frames_of(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """The packed per-instance tensors cut back into frames."""
    counts = scenario["counts"].tolist()
    keys = [k for k in ("boxes", "true_tracks", "points", "tracks", "scores", "features") if k in scenario]
    split = {key: torch.split(scenario[key], counts) for key in keys}
    return [
        {"frame_idx": int(index), "low_confidence": bool(flag), **{key: split[key][i] for key in keys}}
        for i, (index, flag) in enumerate(zip(scenario["frame_idx"], scenario["low_confidence"], strict=True))
    ]


@pytest.mark.parametrize("name", sorted(RECORDED["scenarios"]))
def test_tracks_equal_dreems(name: str) -> None:
    scenario: dict[str, Any] = RECORDED["scenarios"][name]
    height, width = RECORDED["image_size"]
    replay = Replay(scenario)
    tracker = Tracker(
        replay,
        TrackerConfig.model_validate(scenario["tracker"]),
        node_names=RECORDED["node_names"],
        single_detection_defect=True,
    )
    for recorded in frames_of(scenario):
        count = len(recorded["true_tracks"])
        result = tracker.step(
            Detections(
                frame_idx=recorded["frame_idx"],
                features=recorded.get("features", torch.zeros(count, 1)),
                boxes=recorded["boxes"],
                true_tracks=recorded["true_tracks"],
                image_size=(height, width),
                points=recorded["points"].numpy(),
            )
        )
        where = f"{name}, frame {recorded['frame_idx']}"
        assert result.tracks.tolist() == recorded["tracks"].tolist(), where
        assert torch.allclose(result.scores, recorded["scores"], atol=1e-4), where
        assert result.low_confidence == recorded["low_confidence"], where
    assert replay.calls == 0 and not len(replay.logits), "DREEM associated frames that we did not"


def test_scenarios_exercise_the_options() -> None:
    """The fixture is only as good as what happens in it: new tracks, untracked detections, flags, gaps."""
    scenarios = RECORDED["scenarios"]
    tracks = {name: set(s["tracks"].tolist()) for name, s in scenarios.items()}
    assert tracks["defaults"] == {0, 1}
    assert all(len(tracks[name]) > 2 for name in scenarios if name.startswith("noisy"))
    assert -1 in tracks["untracked_at_max_tracks"]
    assert scenarios["untracked_at_max_tracks"]["low_confidence"].any()
    assert (scenarios["single_detections"]["counts"] == 1).any()
