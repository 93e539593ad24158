"""DREEM trainer: the training configuration, data, model, Lightning training, tracking and storage."""

__version__ = "0.1.0"
