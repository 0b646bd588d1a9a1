"""The Capture workspace: camera, live view, and labeling (filmstrip, canvas)."""
