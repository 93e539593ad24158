"""Data: labels and videos in, model-ready clips of cropped instances out.

Readers (`sources`) turn a labels file and its video into Frames of Instances; `discovery` pairs
files by name; `crops` holds the pure geometry; `dataset` assembles Clips with a bounded frame cache
so each frame is decoded once per clip, never once per instance.
"""
