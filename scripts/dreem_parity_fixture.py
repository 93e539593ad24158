"""Write tests/data/dreem/two_flies_parity.pt: what DREEM 0.5.1 itself computes with the shared DREEM
checkpoint on the first clip of two_flies, for tests/integration/test_dreem_checkpoint.py to compare with.

Runs in the reference implementation's environment (it imports DREEM; nothing of dreem-operator):
    /work/main/.peer/venv/bin/python scripts/dreem_parity_fixture.py SHARED_DATA_DIR OUT.pt
where SHARED_DATA_DIR holds sleap/two_flies.{slp,mp4} and dreem/{dreem_two_flies.ckpt,track.yaml}.

The configuration is built as `dreem track` builds it (defaults/track.yaml < dreem/track.yaml < the values
of -a thorax -cs 128 --no-gpu). Recorded, all float32 on the CPU in eval mode:
- "window": frames 0-7 in one forward (every instance queries every instance, as in training):
  crops_u8 (DREEM's float crops are exact multiples of 1/255), bboxes (N, 1, 4) y1 x1 y2 x2 px, frame_ids,
  gt_track_ids, img_shape, backbone_pooled (feature extractor output), features (after the projection and
  L2 normalisation), pos_emb, temp_emb, encoder_out, decoder_out (every layer) and logits (last layer).
- "tracker": DREEM's tracker over the whole first clip; per query frame, the window it built (frame ids,
  boxes and track ids of every row, the query frame last) and the raw association logits its model gave.
DREEM shuffles the instances of each frame with numpy's global generator; it is seeded, and every row
carries its frame and track so a test can match rows whatever their order.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from dreem.cli import build_config
from dreem.inference.tracker import Tracker
from dreem.io import Config
from dreem.models import GTRRunner
from dreem.models.model_utils import get_boxes, get_times

WINDOW = 8


def main(data: Path, out: Path) -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = build_config(
        "track",
        data / "dreem" / "track.yaml",
        None,
        **{
            "ckpt_path": str(data / "dreem" / "dreem_two_flies.ckpt"),
            "outdir": str(out.parent / "dreem_out"),
            "dataset.test_dataset.dir.path": str(data / "sleap"),
            "dataset.test_dataset.anchors": "thorax",
            "dataset.test_dataset.clip_length": 32,
            "dataset.test_dataset.crop_size": 128,
            "tracker.iou": "mult",
            "tracker.confidence_threshold": 0,
            "save_frame_meta": False,
            "trainer.accelerator": "cpu",
        },
    )
    config = Config(cfg)
    runner = GTRRunner.load_from_checkpoint(cfg.ckpt_path, strict=False, map_location="cpu")
    overrides = runner.setup_tracking(config, mode="inference")
    dataset = config.get_dataset(
        label_files=[str(data / "sleap" / "two_flies.slp")],
        vid_files=[str(data / "sleap" / "two_flies.mp4")],
        mode="test",
        overrides=overrides,
    )
    model = runner.model.eval()
    torch.save({"window": window(model, dataset), "tracker": tracked(model, runner, dataset)}, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


def window(model: Any, dataset: Any) -> dict[str, torch.Tensor]:
    frames = dataset[0][:WINDOW]
    instances = [instance for frame in frames for instance in frame.instances]
    crops = torch.cat([instance.crop for instance in instances])
    assert torch.equal((crops * 255).round() / 255, crops), "crops are not exact multiples of 1/255"
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str, flatten: bool = False) -> Any:
        def hook(module: Any, inputs: Any, output: torch.Tensor) -> None:
            captured[name] = output.detach().reshape(output.shape[0], -1) if flatten else output.detach()

        return hook

    hooks = [
        model.visual_encoder.feature_extractor.register_forward_hook(keep("backbone_pooled", flatten=True)),
        model.transformer.encoder.register_forward_hook(keep("encoder_out")),
        model.transformer.decoder.register_forward_hook(keep("decoder_out")),
    ]
    times, _ = get_times(instances, None)
    with torch.no_grad():
        association = model(instances, None, retain_crops=True)
        pos_emb = model.transformer.pos_emb(torch.nan_to_num(get_boxes(instances), -1.0))
        temp_emb = model.transformer.temp_emb(times)
    for hook in hooks:
        hook.remove()
    return {
        "crops_u8": (crops * 255).round().to(torch.uint8),
        "bboxes": torch.cat([instance.bbox for instance in instances]),
        "frame_ids": torch.tensor([instance.frame.frame_id.item() for instance in instances]),
        "gt_track_ids": torch.tensor([instance.gt_track_id.item() for instance in instances]),
        "img_shape": torch.tensor(list(frames[0].img_shape)),
        "features": torch.cat([instance.features for instance in instances]),
        "pos_emb": pos_emb,
        "temp_emb": temp_emb,
        "logits": association[-1].matrix.detach(),
        **captured,
    }


def tracked(model: Any, runner: Any, dataset: Any) -> list[dict[str, torch.Tensor]]:
    records: list[dict[str, torch.Tensor]] = []
    original = Tracker._run_global_tracker

    def recording(self: Any, model: Any, frames: Any, query_ind: Any) -> Any:
        rows = [(frame, instance) for frame in frames for instance in frame.instances]
        query = original(self, model, frames, query_ind)
        # Window rows carry the track the tracker gave them; the query frame (last) its rows' true tracks.
        tracks = [instance.pred_track_id.item() for frame in frames[:-1] for instance in frame.instances]
        tracks += [instance.gt_track_id.item() for instance in frames[-1].instances]
        records.append(
            {
                "frame_ids": torch.tensor([frame.frame_id.item() for frame, _ in rows]),
                "track_ids": torch.tensor(tracks),
                "bboxes": torch.cat([instance.bbox for _, instance in rows]),
                "num_query": torch.tensor(frames[-1].num_detected),
                "logits": query.asso_output.matrix.detach().clone(),
                "assigned": torch.tensor([instance.pred_track_id.item() for instance in frames[-1].instances]),
            }
        )
        return query

    Tracker._run_global_tracker = recording
    try:
        with torch.no_grad():
            Tracker(**runner.tracker_cfg)(model, dataset[0])
    finally:
        Tracker._run_global_tracker = original
    return records


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
