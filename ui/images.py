"""Faces sent inside the page's responses, drawn at the size they are shown.

Gradio's image components write every picture they send to a file in its temp folder, and a
live preview sends a dozen frames an edit: over a long session that folder, not the sessions,
was most of what the server kept on disk. These components send the picture itself instead (a
WebP ``data:`` URL in the event stream): nothing is written, nothing is left to clean up.

A face is drawn at its display size with a Lanczos filter here, once, rather than stretched by
the browser (a soft, blurry scale-up of a 128-px face). A frame of an edit in flight (``Frame``)
is on screen for a tenth of a second: it is drawn with a bilinear filter and WebP's fastest
method instead, a third of the cost (about 10 ms rather than 30 ms a 384-px frame on one core),
so the preview keeps up with the walk.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.components.imageslider import SliderData
from gradio.data_classes import ImageData
from PIL import Image

from chatedit.images import DISPLAY_PX, display_size

QUALITY = 90  # WebP quality of a face sent inline
FRAME_QUALITY = 80  # and of a frame of an edit in flight


@dataclass(frozen=True)
class Frame:
    """A picture on screen only while an edit walks: drawn fast rather than finely."""

    image: Image.Image


def data_url(image: Image.Image, longer: int = DISPLAY_PX, fast: bool = False) -> str:
    """``image`` at display size as a WebP ``data:`` URL; ``fast``: bilinear and WebP's fastest method."""
    buffer = io.BytesIO()
    if fast:
        display_size(image.convert("RGB"), longer, Image.Resampling.BILINEAR).save(
            buffer, "WEBP", quality=FRAME_QUALITY, method=0)
    else:
        display_size(image.convert("RGB"), longer).save(buffer, "WEBP", quality=QUALITY)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def inline(value: Frame | Image.Image | np.ndarray | str | Path | None, longer: int = DISPLAY_PX) -> ImageData | None:
    """A picture (a frame in flight, PIL image, array or file) as an image payload that carries its own pixels."""
    if value is None:
        return None
    if isinstance(value, Frame):
        return ImageData(url=data_url(value.image, longer, fast=True), mime_type="image/webp")
    if isinstance(value, np.ndarray):
        value = Image.fromarray(value)
    elif not isinstance(value, Image.Image):
        with Image.open(value) as opened:
            value = opened.convert("RGB")
    return ImageData(url=data_url(value, longer), mime_type="image/webp")


class InlineImage(gr.Image):
    """``gr.Image`` (read-only) whose pictures travel inline, drawn at ``display_px``."""

    display_px = DISPLAY_PX  # (no constructor of its own: Gradio reads a component's props from its signature)

    def get_block_name(self) -> str:
        return "image"  # the browser side is Gradio's own image component

    def postprocess(self, value) -> ImageData | None:
        return inline(value, self.display_px)


class InlineImageSlider(gr.ImageSlider):
    """``gr.ImageSlider`` (read-only) whose two pictures travel inline, drawn at ``display_px``."""

    display_px = DISPLAY_PX

    def get_block_name(self) -> str:
        return "imageslider"

    def postprocess(self, value) -> SliderData | None:
        if value is None:
            return None
        return SliderData(root=(inline(value[0], self.display_px), inline(value[1], self.display_px)))
