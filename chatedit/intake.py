"""What a request may bring in, checked and bounded before any backend work: photos and messages.

``read_photo`` takes a photo (a file or an open picture) in four steps: its size is read from the
header and refused above ``IntakeLimits.max_pixels`` before a pixel is decoded; it is decoded at a
reduced scale when large (at most ``max_side`` pixels a side, so an upload costs a bounded amount of
memory); turned upright by its EXIF orientation; refused when it is blank or a single colour. Only
then does the backend find and align the face. Every refusal is an ``EditError`` whose message is
a sentence for the person (``prompts/feedback.yaml``, ``upload.*``).

``check_text`` does the same for a message: an over-long one is refused with a sentence and kept
only as a short excerpt, so a 5 MB message costs nothing to store or to show again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from chatedit.agent import MAX_MESSAGE_CHARS
from chatedit.editor import EditError
from chatedit.feedback import load_feedback
from chatedit.tools.align import NoFaceDetector, NoFaceFound
from chatedit.tools.backend import Backend, BackendError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntakeLimits:
    max_pixels: int = 40_000_000  # larger pictures are refused from their header, never decoded
    max_side: int = 4096  # larger pictures are decoded at a reduced scale (JPEG) or reduced before the backend
    min_spread: float = 2.0  # a picture whose every channel varies less than this (std, of 255) is blank
    max_chars: int = MAX_MESSAGE_CHARS  # longer messages are refused
    excerpt_chars: int = 200  # what is kept of a refused message


DEFAULT_LIMITS = IntakeLimits()


# --------------------------------------------------------------------------- photos


def read_photo(backend: Backend, source: str | Path | Image.Image,
               limits: IntakeLimits = DEFAULT_LIMITS) -> torch.Tensor:
    """A photo (a file or an open picture) as the backend's aligned face (3, H, W) in [0, 1].

    Raises ``EditError`` with a sentence for the person when it is not an image, too large, blank
    or shows no face; the backend sees nothing of a picture refused before its face is looked for.
    """
    return face_of(backend, read_picture(source, limits))


def read_picture(source: str | Path | Image.Image, limits: IntakeLimits = DEFAULT_LIMITS) -> Image.Image:
    """A photo (a file or an open picture) checked and decoded: upright, RGB, at most
    ``limits.max_side`` a side. ``EditError`` with a sentence when it is not an image, too large or blank."""
    feedback = load_feedback()
    name = "the picture" if isinstance(source, Image.Image) else Path(source).name
    # Pillow's own check agrees: a picture over twice the limit fails in ``Image.open`` itself
    # (DecompressionBombError), before it could be decoded; one between is refused from its header below
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        if isinstance(source, Image.Image):
            return prepare_picture(source.copy() if max(source.size) > limits.max_side else source, limits)
        with Image.open(source) as opened:  # reads the header only
            return prepare_picture(opened, limits)
    except EditError:
        raise
    except Image.DecompressionBombError:
        raise EditError(feedback.say("upload.too_large", size=f"over {2 * limits.max_pixels / 1e6:.0f} megapixels",
                                     limit=f"{limits.max_pixels / 1e6:.0f}")) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise EditError(feedback.say("upload.not_image", name=name)) from error


def face_of(backend: Backend, picture: Image.Image) -> torch.Tensor:
    """The backend's aligned face (3, H, W) in a picture ``read_picture`` gave; ``EditError`` if none."""
    try:
        return backend.intake(picture)
    except NoFaceFound:
        raise EditError(load_feedback().say("upload.face_not_found")) from None
    except NoFaceDetector as error:  # the server's installation, not the photo: the log says what to install
        logger.error("upload refused: %s", error)
        raise EditError(load_feedback().say("upload.no_detector")) from None
    except BackendError as error:  # the backend's workers could not take it (chatedit.workers): its sentence
        raise EditError(str(error)) from error
    except (OSError, ValueError) as error:
        raise EditError(load_feedback().say("upload.not_image", name="the picture")) from error


def prepare_picture(picture: Image.Image, limits: IntakeLimits = DEFAULT_LIMITS) -> Image.Image:
    """An opened picture (only its header read, or already decoded) as an upright RGB picture of at
    most ``limits.max_side`` pixels a side; ``EditError`` when it is too large or blank. A larger
    ``picture`` is shrunk in place."""
    feedback = load_feedback()
    # 1. the size, from the header: nothing is decoded yet
    width, height = picture.size
    if width * height > limits.max_pixels:
        raise EditError(feedback.say("upload.too_large", size=f"{width}×{height} pixels "
                                     f"({width * height / 1e6:.0f} megapixels)",
                                     limit=f"{limits.max_pixels / 1e6:.0f}"))
    # 2. decode: a large picture at a reduced scale (a JPEG decodes at 1/2 … 1/8 scale) and shrunk
    if max(width, height) > limits.max_side:
        picture.thumbnail((limits.max_side, limits.max_side))  # draft, load, reduce, resample, in place
    picture.load()
    # 3. upright, as the camera's EXIF orientation says it is shown; RGB
    picture = ImageOps.exif_transpose(picture)
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    # 4. a blank or single-coloured picture has no face to look for
    small = picture.reduce(max(1, max(picture.size) // 256))  # at most ~512 a side: enough to see the spread
    spread = np.asarray(small, dtype=np.float32).reshape(-1, 3).std(0)  # (3,) per channel, of 255
    if float(spread.max()) < limits.min_spread:
        raise EditError(feedback.say("upload.blank"))
    return picture


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message:
    """A message as checked: ``said`` is the person's line as stored and shown (the whole message,
    or only its first characters when refused); ``refusal`` the sentence it is refused with, or None."""

    said: str
    refusal: str | None


def check_text(text: str, limits: IntakeLimits = DEFAULT_LIMITS) -> Message:
    """A message checked before anything else: an over-long one is refused, and only an excerpt of
    it is kept (``said``); the agent should not see a refused message at all."""
    if len(text) <= limits.max_chars:
        return Message(text, None)
    excerpt = text[: limits.excerpt_chars].rstrip() + "…"
    refusal = load_feedback().say("text.too_long", n=f"{len(text):,}", limit=f"{limits.max_chars:,}")
    return Message(excerpt, refusal)


__all__ = ["DEFAULT_LIMITS", "IntakeLimits", "Message", "check_text", "face_of", "prepare_picture", "read_photo",
           "read_picture"]
