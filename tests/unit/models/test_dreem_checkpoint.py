"""A checkpoint DREEM 0.5.1 trained loads here and computes what DREEM computed with it.

The reference tensors in tests/data/dreem/two_flies_parity.pt were written by DREEM itself
(scripts/dreem_parity_fixture.py, run in DREEM's environment): each stage is compared on its own, so a
difference names the stage that introduced it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.data.clip import Clip
from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.models.checkpoint import LAYOUT_KEY, load_model, read_checkpoint, stored_config
from dreem_trainer.models.embeddings import normalised_boxes
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from tests.conftest import DEMO_DATA, TEST_DATA

DREEM_CHECKPOINT = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"
PARITY = TEST_DATA / "dreem" / "two_flies_parity.pt"

# An independent implementation of the same float32 math differs from DREEM's in the last digits
# (about 2e-6 in the logits, whose values are near 3); any real difference in the math is far larger.
TOLERANCE = {"features": 1e-5, "embeddings": 1e-6, "transformer": 1e-5, "logits": 1e-4}


@cache
def reference() -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(PARITY, weights_only=True)
    return loaded


@cache
def model() -> GlobalTrackingTransformer:
    return load_model(DREEM_CHECKPOINT)


@cache
def first_clip() -> Clip:
    """Our data pipeline's first clip of two_flies, cropped as the checkpoint's training data was."""
    split = DatasetSplitConfig.model_validate(
        {
            "mode": "test",
            "slp_files": [str(DEMO_DATA / "two_flies.slp")],
            "video_files": [str(DEMO_DATA / "two_flies.mp4")],
            "anchors": "thorax",
            "crop_size": 128,
            "clip_length": 32,
        }
    )
    return ClipDataset(split, seed=0, frame_cache_mb=0)[0]


def rows_of(clip: Clip, frames: torch.Tensor, tracks: torch.Tensor) -> torch.Tensor:
    """Our row of each (frame, track): DREEM shuffles instances within a frame."""
    frame_of_row = clip.frame_indices[clip.frame_ids]
    rows = [((frame_of_row == f) & (clip.track_ids == t)).nonzero().item() for f, t in zip(frames, tracks, strict=True)]
    return torch.tensor(rows)


def worst(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs.reshape(ours.shape)).abs().max())


def test_the_checkpoint_rebuilds_dreems_network() -> None:
    checkpoint = read_checkpoint(DREEM_CHECKPOINT)
    assert checkpoint.written_by_dreem
    config = checkpoint.model_config()
    assert (config.d_model, config.nhead, config.norm, config.embedding_meta.semantics) == (128, 1, False, "dreem-0.5")
    assert config.embedding_meta.pos is not None and config.embedding_meta.pos.mode == "learned"
    # Every weight of the checkpoint has its parameter, of the same shape, and nothing is left unset
    # (DREEM's unused Fourier-feature parameter aside).
    ours = model().state_dict()
    assert set(ours) == set(checkpoint.weights)
    assert all(ours[key].shape == value.shape for key, value in checkpoint.weights.items())
    assert stored_config(DREEM_CHECKPOINT) == {"model": checkpoint.config["model"]}


def test_one_forward_matches_dreem_stage_by_stage() -> None:
    window = reference()["window"]
    network = model()
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        return lambda module, inputs, output: captured.__setitem__(name, output)

    hooks = [
        network.visual_encoder.feature_extractor.register_forward_hook(keep("pooled")),
        network.transformer.encoder.register_forward_hook(keep("encoder")),
        network.transformer.decoder.register_forward_hook(keep("decoder")),
    ]
    image_size = window["img_shape"][1:]
    with torch.no_grad():
        output = network(window["crops_u8"], window["bboxes"], window["frame_ids"], image_size)
        features = network.visual_encoder(window["crops_u8"])
        embeddings = network.transformer.embed(window["bboxes"], window["frame_ids"], image_size)
    for hook in hooks:
        hook.remove()
    assert worst(captured["pooled"].flatten(1), window["backbone_pooled"]) < TOLERANCE["features"]
    assert worst(features, window["features"]) < TOLERANCE["features"]
    assert worst(embeddings["pos"], window["pos_emb"]) < TOLERANCE["embeddings"]
    assert worst(embeddings["temp"], window["temp_emb"]) < TOLERANCE["embeddings"]
    assert worst(captured["encoder"][0], window["encoder_out"][:, 0]) < TOLERANCE["transformer"]
    assert worst(captured["decoder"][-1][0], window["decoder_out"][-1][:, 0]) < TOLERANCE["transformer"]
    assert worst(output.matrices[-1], window["logits"]) < TOLERANCE["logits"]


def test_our_crops_are_dreems_crops() -> None:
    window, clip = reference()["window"], first_clip()
    rows = rows_of(clip, window["frame_ids"], window["gt_track_ids"])
    assert torch.equal(clip.crops[rows], window["crops_u8"])
    assert torch.equal(clip.boxes[rows], window["bboxes"])


def test_every_tracking_window_gets_dreems_association_logits() -> None:
    """Each query frame DREEM's tracker saw (windows of 1 to 8 frames before it): same window in, same logits out."""
    clip, network = first_clip(), model()
    records = reference()["tracker"]
    with torch.no_grad():
        features = network.visual_encoder(clip.crops)
        for record in records:
            rows = rows_of(clip, record["frame_ids"], record["track_ids"])
            total, queries = len(rows), int(record["num_query"])
            output = network.associate(
                features[rows],
                clip.boxes[rows],
                record["frame_ids"],
                clip.image_size,
                query_index=torch.arange(total - queries, total),
            )
            assert worst(output.matrices[-1], record["logits"]) < TOLERANCE["logits"], record["frame_ids"]
    assert len(records) == 31


def test_dreems_embedding_reading_is_kept_for_its_checkpoint() -> None:
    """The weights were trained with DREEM's defects, so its checkpoint keeps them: every frame after the
    first reads the temporal table's last row, and y is divided by the frame's width."""
    network = model()
    assert network.transformer.temp_emb is not None and network.transformer.pos_emb is not None
    temporal = network.transformer.temp_emb(torch.tensor([0, 1, 2, 5, 9]))
    table = network.transformer.temp_emb.lookup.weight
    assert torch.equal(temporal[0], table[0])
    assert all(torch.allclose(row, table[-1], atol=1e-5) for row in temporal[1:])
    box = torch.tensor([[[100.0, 300.0, 200.0, 400.0]]])
    frame = torch.tensor([600, 1200])  # height, width
    as_dreem = normalised_boxes(box, frame, network.transformer.pos_emb.semantics)
    assert torch.allclose(as_dreem, torch.tensor([100 / 1200, 300 / 600, 200 / 1200, 400 / 600]))


def test_an_earlier_checkpoint_of_ours_is_refused_clearly(tmp_path: Path) -> None:
    old = tmp_path / "old.ckpt"
    torch.save(
        {"hyper_parameters": {"config": {}}, "state_dict": {"model.visual_encoder.backbone.x": torch.ones(1)}}, old
    )
    with pytest.raises(ValueError, match="written by an earlier dreem"):
        read_checkpoint(old)
    current = tmp_path / "current.ckpt"
    torch.save({"hyper_parameters": {"config": {}}, "state_dict": {}, LAYOUT_KEY: "dreem-0.5"}, current)
    assert read_checkpoint(current).kind == "dreem"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a checkpoint at all", "not a checkpoint torch can read"), (None, "not a dreem or DREEM checkpoint")],
    ids=["garbage", "other-pickle"],
)
def test_a_file_that_is_no_checkpoint_is_named(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "file.ckpt"
    if content is None:
        torch.save({"weights": torch.ones(2)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as raised:
        read_checkpoint(path)
    assert str(path) in str(raised.value)


def test_reduced_precision_keeps_dreems_logits_close() -> None:
    """Tracking on a GPU runs under bf16 autocast; the same mixed dtypes run here on the CPU."""
    window = reference()["window"]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        output = model()(window["crops_u8"], window["bboxes"], window["frame_ids"], window["img_shape"][1:])
    logits = output.matrices[-1].float()
    # bf16 keeps 8 bits of mantissa: logits near 3 round to about 0.01, and every layer adds its own rounding.
    assert worst(logits, window["logits"]) < 0.15
    assert torch.equal(logits.argmax(1), window["logits"].argmax(1))
