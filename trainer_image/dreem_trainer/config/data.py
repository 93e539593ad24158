"""The `dataset` and `dataloader` sections."""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import LibraryCallSection, Section
from dreem_trainer.config.issues import did_you_mean, key_error
from dreem_trainer.config.library_names import CallSignature, library_names
from dreem_trainer.config.notices import no_effect
from dreem_trainer.config.paths import check_path

EXTRA_AUGMENTATIONS = {"NodeDropout": frozenset({"p", "n"}), "InstanceDropout": frozenset({"p", "n"})}


class DirConfig(Section):
    """Directory-based input: labels and videos are paired by file stem."""

    path: str | list[str] | None = Field(
        None,
        description="Path or list of paths to directories containing videos and labels (use absolute paths); null "
        "when the command line gives it.",
    )
    labels_suffix: str = Field(".slp", description="File extension for label files (e.g., .slp, .csv, .xml).")
    vid_suffix: str = Field(".mp4", description="File extension for video files (e.g., .mp4, .avi, .tif, .tiff).")

    @property
    def paths(self) -> list[str]:
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @field_validator("path")
    @classmethod
    def _not_empty(cls, path: str | list[str] | None) -> str | list[str] | None:
        if path is None:
            return path
        if not path:
            raise ValueError("needs at least one directory")
        for entry in [path] if isinstance(path, str) else path:
            check_path(entry)
        return path


class DatasetSplitConfig(Section):
    dir: DirConfig | None = Field(None, description="Directory-based input (recommended).")
    slp_files: list[str] | None = Field(None, description="List of paths to SLEAP label files (.slp).")
    video_files: list[str] | None = Field(
        None,
        description="List of paths to video files, one per labels file; left out, the videos each labels file "
        "names (a SLEAP file records its videos' paths).",
    )
    crop_size: int | list[int] = Field(
        128,
        description="Size (in pixels) of the square bounding box around each instance. Should match approximate "
        "size of tracked objects; if a list, one per dir.path entry.",
    )
    clip_length: int = Field(32, ge=1, description="Number of frames per chunk when processing videos (default: 32).")
    chunk: bool = Field(True, description="Whether to chunk videos into smaller clips (default: true).")
    n_chunks: int | float = Field(
        1.0,
        gt=0,
        description="Number of chunks to train on (dataset size is clip_length * n_chunks); a float <= 1 is a "
        "fraction of all chunks (default: 1.0, all).",
    )
    anchors: str | list[str] | int = Field(
        "centroid",
        description='Node name to center crops around (e.g. "centroid"), a list of node names (one crop each, '
        "stacked on channels), or a number of anchors to select at random.",
    )
    padding: int = Field(0, ge=0, description="Amount of padding added to each side of the bounding box (default: 0).")
    mode: Literal["train", "val", "test"] | None = Field(
        None,
        description='Dataset mode. Options: "train" or "val" (determines usage); defaults to the split it is under.',
    )
    handle_missing: Literal["drop", "ignore", "centroid"] = Field(
        "centroid",
        description='How to handle missing anchor nodes. Options: "drop", "ignore", or "centroid" '
        "(only for SleapDataset).",
    )
    dilation_radius_px: int = Field(
        0, ge=0, description="Size of mask around keypoint (in pixels) to mask out background (default: 0; no masking)."
    )
    augmentations: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Albumentations transforms by class name with their parameters, plus NodeDropout and "
        "InstanceDropout. Typically only used for training datasets.",
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of this split's sampling and augmentation (default: the top-level seed)."
    )
    max_batching_gap: int = Field(
        15,
        ge=1,
        description="Labelled frames this many or more frames apart start a new clip, so a clip never spans a "
        "long unlabelled stretch (default: 15).",
    )
    max_detection_overlap: float = Field(
        0.0,
        ge=0,
        description="Of two detections whose crop boxes overlap by more than this (intersection over the smaller "
        "box), drop the one with fewer visible keypoints (default: 0, off).",
    )
    normalize_image: bool = Field(
        True, description="Frames are scaled to [0, 1] before the visual encoder; only true is accepted."
    )
    use_tight_bbox: bool = Field(
        False, description="DREEM's variable-size crops around the keypoints; not supported, only false is accepted."
    )
    verbose: bool | None = Field(
        None,
        description="Accepted for DREEM configs; no effect.",
        exclude=True,
        json_schema_extra=no_effect("DREEM's datasets never print anything more with it"),
    )
    detection_iou_threshold: Any = Field(
        None,
        description="Accepted for DREEM configs (documented for inference); no effect.",
        exclude=True,
        json_schema_extra=no_effect("DREEM documents it but never reads it"),
    )

    @field_validator("normalize_image")
    @classmethod
    def _scaled_frames(cls, normalize: bool) -> bool:
        if not normalize:
            raise ValueError("dreem always scales frames to [0, 1] for the visual encoder (DREEM's false feeds 0-255)")
        return normalize

    @field_validator("use_tight_bbox")
    @classmethod
    def _square_crops(cls, tight: bool) -> bool:
        if tight:
            raise ValueError("dreem crops squares of crop_size around the anchors; tight boxes are not supported")
        return tight

    @field_validator("slp_files", "video_files")
    @classmethod
    def _paths(cls, files: list[str] | None) -> list[str] | None:
        for path in files or []:
            check_path(path)
        return files

    @field_validator("crop_size")
    @classmethod
    def _positive_crops(cls, crop_size: int | list[int]) -> int | list[int]:
        sizes = [crop_size] if isinstance(crop_size, int) else crop_size
        if not sizes or any(size <= 0 for size in sizes):
            raise ValueError("crop sizes must be positive integers")
        return crop_size

    @field_validator("anchors")
    @classmethod
    def _some_anchor(cls, anchors: str | list[str] | int) -> str | list[str] | int:
        if isinstance(anchors, int) and anchors < 1:
            raise ValueError("a number of anchors must be at least 1")
        if isinstance(anchors, list) and not anchors:
            raise ValueError("the anchor list is empty")
        if isinstance(anchors, str) and not anchors.strip():
            raise ValueError("the anchor name is empty")
        return anchors

    @field_validator("n_chunks")
    @classmethod
    def _fraction_or_count(cls, n_chunks: int | float) -> int | float:
        if isinstance(n_chunks, float) and n_chunks > 1:
            whole = f"; write {int(n_chunks)} for that many chunks" if n_chunks.is_integer() else ""
            raise ValueError(f"a float is a fraction of the chunks, at most 1{whole}")
        return n_chunks

    @field_validator("augmentations")
    @classmethod
    def _known_augmentations(cls, augmentations: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if not augmentations:
            return augmentations
        known = library_names().augmentations
        for name, params in augmentations.items():
            if name in EXTRA_AUGMENTATIONS:
                unknown = sorted(set(params or {}) - EXTRA_AUGMENTATIONS[name])
                _check_dropout(name, params or {})
            elif name in known:
                unknown = known[name].unknown(set(params or {}))
            else:
                choices = set(known) | set(EXTRA_AUGMENTATIONS)
                raise key_error(
                    name,
                    f"not an albumentations transform, NodeDropout or InstanceDropout{did_you_mean(name, choices)}",
                    name,
                )
            if unknown:
                params = params or {}
                raise key_error(f"{name}.{unknown[0]}", f"{name} takes no argument {unknown[0]!r}", params[unknown[0]])
        return augmentations

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSplitConfig:
        if (self.video_files is not None and self.slp_files is None) or (
            self.slp_files is not None and self.video_files is not None and len(self.slp_files) != len(self.video_files)
        ):
            raise key_error(
                "video_files",
                f"needs one video per labels file ({len(self.slp_files or [])} slp_files)",
                self.video_files,
            )
        if isinstance(self.crop_size, list):
            n_dirs = len(self.slp_files) if self.slp_files else len(self.dir.paths) if self.dir is not None else 0
            if len(self.crop_size) != n_dirs:
                raise key_error(
                    "crop_size", f"a crop_size list needs one size per dir.path entry ({n_dirs})", self.crop_size
                )
        return self

    @property
    def reads_files(self) -> bool:
        """slp_files/video_files replace the directory's pairs when both are given, as in DREEM."""
        return bool(self.slp_files)

    @property
    def has_source(self) -> bool:
        return (self.dir is not None and self.dir.path is not None) or bool(self.slp_files)

    def reading(
        self, directory: str | None = None, slp_files: list[str] | None = None, video_files: list[str] | None = None
    ) -> DatasetSplitConfig:
        """This split reading other data: a directory (paired with this split's suffixes) or listed files.
        Crops, anchors and the rest stay as they are; the result is validated like any split."""
        if directory is not None:
            suffixes = self.dir.model_dump(include={"labels_suffix", "vid_suffix"}) if self.dir is not None else {}
            source: dict[str, Any] = {"dir": {"path": directory, **suffixes}, "slp_files": None, "video_files": None}
            if isinstance(self.crop_size, list):
                # One size per configured directory: the one directory given instead takes the first.
                source["crop_size"] = self.crop_size[0]
        else:
            source = {"dir": None, "slp_files": slp_files, "video_files": video_files}
        return DatasetSplitConfig.model_validate(self.model_dump() | source)

    @property
    def n_anchor_crops(self) -> int:
        """How many crops are stacked on channels per instance."""
        if isinstance(self.anchors, list):
            return len(self.anchors)
        if isinstance(self.anchors, int):
            return self.anchors
        return 1


def _check_dropout(name: str, params: dict[str, Any]) -> None:
    """NodeDropout and InstanceDropout are dreem's own: a probability `p` and a count `n` of at least 1."""
    p, n = params.get("p", 0.5), params.get("n", 1)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise key_error(f"{name}.p", "a probability, from 0 to 1", p)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise key_error(f"{name}.n", "how many to drop: a whole number, at least 1", n)


DREEM_TEST_PADDING = 5
"""Crop padding of a DREEM tracking split that sets none (its SleapDataset's default)."""

DREEM_TRAIN_AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "GaussianBlur": {"blur_limit": [3, 7], "p": 0.2},
    "MotionBlur": {"blur_limit": [3, 7], "p": 0.2},
    "RandomBrightnessContrast": {"brightness_limit": 0.1, "contrast_limit": 0.3, "p": 0.3},
    "Rotate": {"limit": 45, "p": 0.3},
}
"""The training split's augmentations in DREEM's defaults (its `configs/defaults/train.yaml`)."""


def _with_dreem_augmentations(split: Any) -> Any:
    """The training split as DREEM merges it over its defaults: augmentations the user leaves out are DREEM's
    four, and a mapping of them is merged into those four transform by transform; null turns them off."""
    if not isinstance(split, dict):
        return split
    if "augmentations" not in split:
        return {**split, "augmentations": copy.deepcopy(DREEM_TRAIN_AUGMENTATIONS)}
    given = split["augmentations"]
    if not isinstance(given, dict):
        return split
    merged = copy.deepcopy(DREEM_TRAIN_AUGMENTATIONS)
    for name, params in given.items():
        merged[name] = {**merged.get(name, {}), **(params or {})}
    return {**split, "augmentations": merged}


class DatasetConfig(Section):
    train_dataset: DatasetSplitConfig = Field(
        default_factory=lambda: DatasetSplitConfig(
            mode="train", augmentations=copy.deepcopy(DREEM_TRAIN_AUGMENTATIONS)
        ),
        description="Training dataset. Its augmentations default to DREEM's (GaussianBlur, MotionBlur, "
        "RandomBrightnessContrast, Rotate); transforms given are merged into those, null turns them off.",
    )
    val_dataset: DatasetSplitConfig | None = Field(None, description="Validation dataset (typically no augmentations).")
    test_dataset: DatasetSplitConfig | None = Field(
        None,
        description="Test dataset, used by dreem track and eval; its padding defaults to 5, as in DREEM "
        "(without one, they take the training split's crop settings).",
    )
    metrics: Any = Field(
        None,
        description="Accepted for DREEM configs (its inference guide puts metrics here); no effect, use the "
        "top-level metrics.",
        exclude=True,
        json_schema_extra=no_effect("DREEM documents dataset.metrics but reads the top-level metrics"),
    )

    @model_validator(mode="before")
    @classmethod
    def _dreem_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "train_dataset" in data:
            data["train_dataset"] = _with_dreem_augmentations(data["train_dataset"])
        test = data.get("test_dataset")
        if isinstance(test, dict) and "padding" not in test:
            # DREEM's tracking splits leave padding to its dataset class, whose default is 5.
            data["test_dataset"] = {**test, "padding": DREEM_TEST_PADDING}
        return data

    def test_split(self) -> DatasetSplitConfig:
        """What `dreem track` and `dreem eval` read: `test_dataset` if configured, else the training split's
        crop settings, in test mode, unaugmented, every clip kept."""
        if self.test_dataset is not None:
            return self.test_dataset
        return self.train_dataset.model_copy(
            update={"mode": "test", "augmentations": None, "n_chunks": 1.0, "chunk": True}
        )

    @model_validator(mode="after")
    def _modes_follow_splits(self) -> DatasetConfig:
        for split, mode in (("train_dataset", "train"), ("val_dataset", "val"), ("test_dataset", "test")):
            config = getattr(self, split)
            if config is not None and config.mode is None:
                config.mode = mode
        return self


class DataLoaderSplitConfig(LibraryCallSection):
    """Extra keys go to torch.utils.data.DataLoader."""

    shuffle: bool = Field(
        False,
        description="Whether to reshuffle data at every epoch. Should be true for training, false for "
        "validation/test (default: false).",
    )
    num_workers: int = Field(
        0, ge=0, description="Number of subprocesses for data loading. Use 0 for single-process loading."
    )

    @property
    def signature(self) -> CallSignature:
        return library_names().dataloader

    @model_validator(mode="after")
    def _dreem_sets_the_data(self) -> DataLoaderSplitConfig:
        for key in ("dataset", "collate_fn", "sampler", "batch_sampler"):
            if key in self.extra():
                raise key_error(key, "is set by dreem and cannot be configured", self.extra()[key])
        size = self.extra().get("batch_size", 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise key_error("batch_size", "a whole number of clips, 1 or more", size)
        return self


class DataLoaderConfig(Section):
    train_dataloader: DataLoaderSplitConfig = Field(
        default_factory=lambda: DataLoaderSplitConfig(shuffle=True),
        description="Training data loader; shuffle defaults to true here, as in DREEM's defaults.",
    )
    val_dataloader: DataLoaderSplitConfig = Field(
        default_factory=DataLoaderSplitConfig, description="Validation data loader (shuffle should be false)."
    )
    test_dataloader: DataLoaderSplitConfig = Field(
        default_factory=DataLoaderSplitConfig, description="Test data loader (shuffle should be false)."
    )

    @model_validator(mode="before")
    @classmethod
    def _training_clips_shuffled(cls, data: Any) -> Any:
        """DREEM's defaults shuffle the training clips: a training loader given without `shuffle` keeps that."""
        if isinstance(data, dict) and isinstance(data.get("train_dataloader"), dict):
            return {**data, "train_dataloader": {"shuffle": True, **data["train_dataloader"]}}
        return data
