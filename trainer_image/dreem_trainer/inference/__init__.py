"""Inference: `dreem track` and `dreem eval` load a trained model, track videos and write labels and metrics."""
