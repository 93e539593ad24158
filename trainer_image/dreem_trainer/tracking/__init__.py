"""Tracking: the sliding-window tracker, its association scores and the MOT metrics with the table of every
metric the trainer logs.

Below both training (validation tracks its clips and logs tracking metrics) and inference (`dreem track`
and `dreem eval`), so neither has to import the other.
"""
