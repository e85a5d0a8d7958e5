"""Converting between PIL images and the (3, H, W) float tensors the models use."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

DISPLAY_PX = 384  # the longer side of a face as the page shows it


def display_size(image: Image.Image, longer: int = DISPLAY_PX,
                 resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """``image`` with its longer side ``longer`` px (Lanczos unless told otherwise)."""
    scale = longer / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, resample)


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) tensor in [0, 1] as an RGB image."""
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image tensor of shape (3, H, W), got {tuple(image.shape)}")
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def from_pil(image: Image.Image, size: int) -> torch.Tensor:
    """An image as a (3, size, size) tensor: centre-cropped to a square, then resized."""
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
