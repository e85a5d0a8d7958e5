"""The diffusion backend: LEDITS++ edits on Stable Diffusion checkpoints, read by a CLIP degree reader."""
