"""The W+ adapter backend: a face is a StyleGAN W+ code and a scene, drawn by Stable Diffusion 1.5."""
