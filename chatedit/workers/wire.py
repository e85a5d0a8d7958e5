"""What crosses between a replica and the page: per frame, one compressed image and its readings.

A walk's frames and an inversion's progress travel as WebP (a few KB at 128 px); what the page
keeps (the chosen code, the final image, the readings) travels as tensors, exactly as computed, so
a session through the workers ends where the same session in-process ends.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from chatedit.images import to_pil
from chatedit.tools.walk import Frame

WEBP_QUALITY = 90  # frames are only shown; the face kept is sent exactly


def pack_image(image: torch.Tensor) -> bytes:
    """A (3, H, W) image in [0, 1] as WebP bytes."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, "WEBP", quality=WEBP_QUALITY, method=0)
    return buffer.getvalue()


def unpack_image(data: bytes) -> torch.Tensor:
    """WebP (or PNG) bytes as a (3, H, W) float image in [0, 1]."""
    with Image.open(io.BytesIO(data)) as picture:
        array = np.asarray(picture.convert("RGB")).copy()
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


@dataclass(frozen=True)
class Started:
    """The first message of every stream: which replica took the call (for logs and fault tests)."""

    replica: str


@dataclass(frozen=True)
class Note:
    """A sentence for the person about how the call is served ("re-preparing your photo")."""

    text: str


@dataclass(frozen=True)
class Failed:
    """The backend refused (``BackendError``): its sentence; nothing was changed."""

    text: str


@dataclass(frozen=True)
class FrameMessage:
    step: int
    image: bytes  # WebP
    degrees: dict[str, int]
    expected: dict[str, float]
    certainty: dict[str, float]

    @classmethod
    def of(cls, frame: Frame) -> FrameMessage:
        return cls(frame.step, pack_image(frame.image), dict(frame.degrees), dict(frame.expected),
                   dict(frame.certainty))

    def frame(self) -> Frame:
        """The page's ``Frame``: its latent stays on the replica (an empty tensor here); only the chosen
        frame's code crosses, in the ``EditResult``."""
        return Frame(self.step, torch.empty(0), unpack_image(self.image), self.degrees, self.expected, self.certainty)


@dataclass(frozen=True)
class Preview:
    """An image drawn on the way to a frame (backends with ``capabilities.previews``)."""

    image: bytes  # WebP


@dataclass(frozen=True)
class Progress:
    """The reconstruction forming while a photo is inverted."""

    step: int
    image: bytes  # WebP


def to_cpu(value):
    """``value`` with its tensors on the CPU (tensors, tuples, lists, dicts and frozen dataclasses of them)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, (tuple, list)):
        return type(value)(to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: to_cpu(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    return value


__all__ = ["Failed", "FrameMessage", "Note", "Preview", "Progress", "Started", "pack_image", "to_cpu", "unpack_image"]
