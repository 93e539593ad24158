"""Inference: the sliding-window tracker, tracking metrics, and `dreem track` / `dreem eval`."""
