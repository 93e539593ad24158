"""Child process of bench/zfish_train.py: the compute bound of N epochs, the bare model steps on the same crops.

Decodes and crops every clip first (untimed), then times what training cannot avoid, epoch after epoch as
training does: a forward, backward and optimizer step of the encoder and transformer per training clip, and a
loss forward per validation clip. All N epochs are timed, not one scaled by N: on ten_zfish an epoch is one
step, and one step is one sample (8.2 s in one run, 6.8-7.4 s in each epoch of the next, on the same machine).
Prints one JSON line: the seconds of the train steps and validation forwards, in all and per epoch.
Usage: python -m bench.bound_worker OVERRIDES_JSON [EPOCHS]
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch

from bench.common import WORKLOAD
from dreem_trainer.config import validate
from dreem_trainer.config.loader import deep_merge
from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.training.module import DreemModule


def main(overrides: dict[str, Any], epochs: int) -> None:
    config = validate(deep_merge(WORKLOAD, overrides))
    torch.manual_seed(0)
    module = DreemModule(config.model_dump(mode="json"))
    configured = module.configure_optimizers()  # the optimizer, or it with its scheduler
    optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
    assert isinstance(optimizer, torch.optim.Optimizer)
    train = ClipDataset(config.dataset.train_dataset, seed=config.seed)
    train_clips = [train[index] for index in range(len(train))]
    assert config.dataset.val_dataset is not None
    val = ClipDataset(config.dataset.val_dataset, seed=config.seed)
    val_clips = [val[index] for index in range(len(val))]
    train_s: list[float] = []
    val_s: list[float] = []
    for _ in range(epochs):
        module.train()
        started = time.perf_counter()
        for clip in train_clips:
            optimizer.zero_grad()
            torch.autograd.backward(module._batch_loss([clip]))
            optimizer.step()
        train_s.append(time.perf_counter() - started)
        module.eval()
        started = time.perf_counter()
        with torch.no_grad():
            for clip in val_clips:
                module._batch_loss([clip])
        val_s.append(time.perf_counter() - started)
    crops = sum(clip.num_instances for clip in train_clips)
    print(
        json.dumps(
            {
                "epochs": epochs,
                "train_steps_s": sum(train_s),
                "val_forwards_s": sum(val_s),
                "train_steps_s_per_epoch": [round(s, 3) for s in train_s],
                "val_forwards_s_per_epoch": [round(s, 3) for s in val_s],
                "train_clips": len(train_clips),
                "crops": crops,
            }
        )
    )


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1)
