"""Write the configurations DREEM 0.5.1's CLI saves beside a run, for tests/unit/config/test_dreem_configs.py.

Run with the reference implementation's interpreter:

    /work/main/.peer/venv/bin/python scripts/make_dreem_written_configs.py tests/data/dreem/configs

`dreem train` saves `./logs/config.<run>.<time>.yaml` and `dreem track` `<outdir>/config.track.<time>.yaml`:
its defaults file, the user's file and its CLI values merged (`dreem.cli.build_config`). These are the same
merges for `dreem train data/train --val-dir data/val --crop-size 128 --no-gpu` and
`dreem track data/test --checkpoint models/dreem.ckpt --output results --crop-size 128 --anchor thorax --no-gpu`,
with the CLI's defaults for every other option, saved as DREEM saves them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dreem.cli import build_config
from omegaconf import OmegaConf

TRAIN_FLAGS = {
    "dataset.train_dataset.dir.path": "data/train",
    "dataset.val_dataset.dir.path": "data/val",
    "dataset.train_dataset.dir.labels_suffix": ".slp",
    "dataset.val_dataset.dir.labels_suffix": ".slp",
    "dataset.train_dataset.dir.vid_suffix": ".mp4",
    "dataset.val_dataset.dir.vid_suffix": ".mp4",
    "trainer.max_epochs": 20,
    "optimizer.lr": 1e-4,
    "model.d_model": 128,
    "model.nhead": 1,
    "model.num_encoder_layers": 1,
    "model.num_decoder_layers": 1,
    "dataset.train_dataset.anchors": "centroid",
    "dataset.val_dataset.anchors": "centroid",
    "dataset.train_dataset.clip_length": 32,
    "dataset.train_dataset.crop_size": 128,
    "dataset.val_dataset.crop_size": 128,
    "logging.name": "dreem_train",
    "trainer.accelerator": "cpu",
}
TRACK_FLAGS = {
    "ckpt_path": "models/dreem.ckpt",
    "outdir": "results",
    "dataset.test_dataset.dir.path": "data/test",
    "dataset.test_dataset.anchors": "thorax",
    "dataset.test_dataset.clip_length": 32,
    "dataset.test_dataset.dir.labels_suffix": ".slp",
    "dataset.test_dataset.dir.vid_suffix": ".mp4",
    "tracker.iou": "mult",
    "dataset.test_dataset.crop_size": 128,
    "tracker.confidence_threshold": 0,
    "save_frame_meta": False,
    "trainer.accelerator": "cpu",
}

out = Path(sys.argv[1])
for command, flags in (("train", TRAIN_FLAGS), ("track", TRACK_FLAGS)):
    name = f"written_{command}.yaml"
    with open(out / name, "w") as handle:
        OmegaConf.save(build_config(command, None, None, **flags), handle)
    print(f"wrote {out / name}")
