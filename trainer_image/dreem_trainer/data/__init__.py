"""Data: labels and videos in, model-ready clips of cropped instances out.

Each labels format (`sleap`, `microscopy` for CTC, `point_tracks` for TrackMate and ICY) reads a labels
file and its video into Frames of Instances and writes predicted tracks back; `formats` is their one
table. `discovery` pairs files by name; `sources` decodes frames; `crops` holds the pure geometry;
`dataset` assembles Clips so each frame is decoded once per clip, never once per instance; it keeps labels as
flat arrays (`label_table`) and its decoded frames and open videos within one byte budget per process (`cache`).
"""
