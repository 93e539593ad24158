"""The `dataset` and `dataloader` sections."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dreem_trainer.config.base import LibraryCallSection, Section
from dreem_trainer.config.issues import did_you_mean, key_error
from dreem_trainer.config.library_names import CallSignature, library_names
from dreem_trainer.config.paths import check_path

EXTRA_AUGMENTATIONS = {"NodeDropout": frozenset({"p", "n"}), "InstanceDropout": frozenset({"p", "n"})}


class DirConfig(Section):
    """Directory-based input: labels and videos are paired by file stem."""

    path: str | list[str] = Field(
        ..., description="Path or list of paths to directories containing videos and labels (use absolute paths)."
    )
    labels_suffix: str = Field(".slp", description="File extension for label files (e.g., .slp, .csv, .xml).")
    vid_suffix: str = Field(".mp4", description="File extension for video files (e.g., .mp4, .avi, .tif, .tiff).")

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @field_validator("path")
    @classmethod
    def _not_empty(cls, path: str | list[str]) -> str | list[str]:
        if not path:
            raise ValueError("needs at least one directory")
        for entry in [path] if isinstance(path, str) else path:
            check_path(entry)
        return path


class DatasetSplitConfig(Section):
    dir: DirConfig | None = Field(None, description="Directory-based input (recommended).")
    slp_files: list[str] | None = Field(None, description="List of paths to SLEAP label files (.slp).")
    video_files: list[str] | None = Field(None, description="List of paths to video files.")
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

    @field_validator("augmentations")
    @classmethod
    def _known_augmentations(cls, augmentations: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        if not augmentations:
            return augmentations
        known = library_names().augmentations
        for name, params in augmentations.items():
            if name in EXTRA_AUGMENTATIONS:
                unknown = sorted(set(params or {}) - EXTRA_AUGMENTATIONS[name])
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
        if self.dir is not None and (self.slp_files or self.video_files):
            raise key_error("dir", "give either dir or slp_files/video_files, not both", self.dir.path)
        if (self.slp_files is None) != (self.video_files is None) or (
            self.slp_files is not None and self.video_files is not None and len(self.slp_files) != len(self.video_files)
        ):
            raise key_error(
                "video_files",
                f"needs one video per labels file ({len(self.slp_files or [])} slp_files)",
                self.video_files,
            )
        if isinstance(self.crop_size, list):
            n_dirs = len(self.dir.paths) if self.dir is not None else len(self.slp_files or [])
            if len(self.crop_size) != n_dirs:
                raise key_error(
                    "crop_size", f"a crop_size list needs one size per dir.path entry ({n_dirs})", self.crop_size
                )
        return self

    @property
    def has_source(self) -> bool:
        return self.dir is not None or bool(self.slp_files)

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


class DatasetConfig(Section):
    train_dataset: DatasetSplitConfig = Field(
        default_factory=lambda: DatasetSplitConfig(mode="train"), description="Training dataset."
    )
    val_dataset: DatasetSplitConfig | None = Field(None, description="Validation dataset (typically no augmentations).")
    test_dataset: DatasetSplitConfig | None = Field(None, description="Test dataset, used by dreem track and eval.")

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
        return self


class DataLoaderConfig(Section):
    train_dataloader: DataLoaderSplitConfig = Field(
        default_factory=DataLoaderSplitConfig, description="Training data loader (shuffle should be true)."
    )
    val_dataloader: DataLoaderSplitConfig = Field(
        default_factory=DataLoaderSplitConfig, description="Validation data loader (shuffle should be false)."
    )
    test_dataloader: DataLoaderSplitConfig = Field(
        default_factory=DataLoaderSplitConfig, description="Test data loader (shuffle should be false)."
    )
