"""Inference: the sliding-window tracker, tracked-label writers and tracking metrics."""
