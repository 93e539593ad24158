"""Training augmentations: albumentations transforms on whole frames, keypoints moved with the pixels,
plus DREEM's NodeDropout and InstanceDropout on the labels."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from dreem_trainer.config.data import EXTRA_AUGMENTATIONS
from dreem_trainer.config.issues import ConfigError, ConfigIssue
from dreem_trainer.data.records import Instance


@dataclass(frozen=True)
class Dropout:
    """With probability `p`, hide `n` randomly chosen nodes (NodeDropout) or instances (InstanceDropout)."""

    p: float = 0.5
    n: int = 1


TRAIN_AUGMENTATIONS_KEY = "dataset.train_dataset.augmentations"


def albumentations_transforms(
    augmentations: dict[str, dict[str, Any]], key: str = TRAIN_AUGMENTATIONS_KEY
) -> list[Any]:
    """The configured albumentations transforms, built. The schema checks their names and parameter names
    (it cannot import albumentations); the values are albumentations' to judge, and one it refuses (`p: 5`)
    is a configuration error naming the key, e.g. dataset.train_dataset.augmentations.Rotate.p."""
    import albumentations as A
    from pydantic import ValidationError

    transforms = []
    for name, params in augmentations.items():
        if name in EXTRA_AUGMENTATIONS:
            continue
        try:
            transforms.append(getattr(A, name)(**(params or {})))
        except (ValueError, TypeError) as error:
            cause = error if isinstance(error, ValidationError) else error.__cause__
            if isinstance(cause, ValidationError) and cause.errors():
                issues = [
                    ConfigIssue(
                        ".".join([key, name, *(str(part) for part in problem["loc"][:1])]),
                        problem["msg"],
                        problem.get("input"),
                    )
                    for problem in cause.errors()
                ]
            else:
                issues = [ConfigIssue(f"{key}.{name}", str(error).splitlines()[0], params)]
            raise ConfigError(issues) from error
    return transforms


class FrameAugmenter:
    """Applies the configured augmentations to one frame and its instances."""

    def __init__(self, augmentations: dict[str, dict[str, Any]], seed: int | None) -> None:
        import albumentations as A

        self.node_dropout = Dropout(**augmentations["NodeDropout"]) if "NodeDropout" in augmentations else None
        self.instance_dropout = (
            Dropout(**augmentations["InstanceDropout"]) if "InstanceDropout" in augmentations else None
        )
        transforms = albumentations_transforms(augmentations)
        # Keypoints ride along only where a transform moves pixels (albumentations warns otherwise).
        self.moves_points = any(isinstance(transform, A.DualTransform) for transform in transforms)
        keypoints = A.KeypointParams(format="xy", remove_invisible=False) if self.moves_points else None
        self.compose = A.Compose(transforms, keypoint_params=keypoints, seed=seed) if transforms else None
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Draw from `seed` from now on (a loader worker's own: see ClipDataset.reseed)."""
        self.rng = np.random.default_rng(seed)
        if self.compose is not None:
            self.compose.set_random_seed(seed % 2**32)

    def __call__(
        self, image: npt.NDArray[np.uint8], instances: tuple[Instance, ...]
    ) -> tuple[npt.NDArray[np.uint8], tuple[Instance, ...]]:
        instances = self._drop_instances(instances)
        instances = tuple(self._drop_nodes(instance) for instance in instances)
        if self.compose is None or not instances:
            return image, instances
        if not self.moves_points:
            return self._with_channels(self.compose(image=image)["image"]), instances
        points = np.concatenate([instance.points for instance in instances])
        hidden = np.isnan(points).any(axis=1)
        result = self.compose(image=image, keypoints=np.where(hidden[:, None], 0.0, points))
        moved = np.asarray(result["keypoints"], dtype=np.float64)[:, :2]
        moved[hidden] = np.nan
        out_image = self._with_channels(result["image"])
        split = np.cumsum([len(instance.points) for instance in instances])[:-1]
        return out_image, tuple(
            replace(instance, points=part) for instance, part in zip(instances, np.split(moved, split), strict=True)
        )

    @staticmethod
    def _with_channels(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        return image[..., None] if image.ndim == 2 else image

    def _drop_instances(self, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
        dropout = self.instance_dropout
        if dropout is None or len(instances) <= 1 or self.rng.random() >= dropout.p:
            return instances
        n = min(dropout.n, len(instances) - 1)
        dropped = set(self.rng.choice(len(instances), size=n, replace=False).tolist())
        return tuple(instance for index, instance in enumerate(instances) if index not in dropped)

    def _drop_nodes(self, instance: Instance) -> Instance:
        dropout = self.node_dropout
        if dropout is None or self.rng.random() >= dropout.p:
            return instance
        points = instance.points.copy()
        nodes = self.rng.choice(len(points), size=min(dropout.n, len(points)), replace=False)
        points[nodes] = np.nan
        return replace(instance, points=points)
