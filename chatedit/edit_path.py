"""The edit-path GIF: a face's history drawn as an animation, on request, each frame drawn once.

A history of faces (latents) becomes frames interpolated in latent space between consecutive
faces, ``gif_frames_per_step`` per step as the backend declares. Frames are kept in an LRU cache
shared by every session of the process and keyed by the latents they are drawn from, so asking
again after one more edit draws only that step's frames. When a long history would need more
than ``GIF_MAX_FRAMES``, each step gets fewer frames, always a subset of the frames already drawn
(a divisor of the declared count), and past one frame per step only some of the faces are shown.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
import threading
import uuid
from fractions import Fraction
from pathlib import Path

import torch
from cachetools import LRUCache
from PIL import Image, ImageDraw, ImageFont

from chatedit.images import display_size, to_pil
from chatedit.tools.backend import Backend

GIF_MAX_FRAMES = 150
CACHE_BYTES = 96 * 2**20  # frames kept over all sessions, as RGB bytes

FrameKey = tuple  # (face digest,) for a face itself, (from digest, to digest, fraction) between two


def plan(latents: list[torch.Tensor], per_step: int, max_frames: int = GIF_MAX_FRAMES,
         cuts: frozenset[int] = frozenset()) -> list[tuple[FrameKey, torch.Tensor, int]]:
    """The frames of a path through ``latents`` (each (1, w_dim)) as (cache key, latent to draw,
    index of the face the frame is on its way to). A step in ``cuts`` (``i``: from face ``i`` to
    ``i + 1``, another person) is a cut, not interpolated."""
    digests = [_digest(w) for w in latents]
    steps = len(latents) - 1
    per = max((d for d in range(1, per_step + 1) if per_step % d == 0 and 1 + steps * d <= max_frames), default=1)
    frames = [((digests[0],), latents[0], 0)]
    for i in range(steps):
        a, b = latents[i], latents[i + 1]
        for j in range(1, per + 1) if i not in cuts else (per,):
            t = Fraction(j, per)
            if t == 1:
                frames.append(((digests[i + 1],), b, i + 1))
            else:
                frames.append(((digests[i], digests[i + 1], t), torch.lerp(a, b, float(t)), i + 1))
    if len(frames) > max_frames:  # one frame per step is still too many: show some of the faces
        keep = torch.linspace(0, len(frames) - 1, max_frames).round().long().tolist()
        frames = [frames[i] for i in keep]
    return frames


class EditPathFrames:
    """Drawn frames, shared by every session of one backend: an LRU cache bounded in bytes."""

    def __init__(self, backend: Backend, max_bytes: int = CACHE_BYTES):
        self.backend = backend
        self._frames: LRUCache = LRUCache(max_bytes, getsizeof=lambda image: image.width * image.height * 3)
        self._lock = threading.Lock()
        self.drawn = 0  # frames drawn so far (the others came from the cache)

    def frames(self, latents: list[torch.Tensor], cuts: frozenset[int] = frozenset()) -> list[Image.Image]:
        """The path through ``latents`` as pictures, drawing only those not drawn before."""
        return [image for image, _ in self._frames_to(latents, cuts)]

    def _frames_to(self, latents: list[torch.Tensor], cuts: frozenset[int]) -> list[tuple[Image.Image, int]]:
        per_step = self.backend.capabilities.gif_frames_per_step
        out = []
        for key, latent, target in plan(latents, per_step, cuts=cuts):
            with self._lock:
                image = self._frames.get(key)
            if image is None:
                with torch.no_grad():
                    image = to_pil(self.backend.generate(latent.to(self.backend.device))[0])
                self.drawn += 1
                with self._lock:
                    self._frames[key] = image
            out.append((image, target))
        return out

    def write_gif(self, latents: list[torch.Tensor], out: Path, captions: list[str] | None = None,
                  cuts: frozenset[int] = frozenset(), size: int | None = None) -> Path:
        """The path through ``latents`` as an animated GIF at ``out`` (written whole, then moved in
        place); with ``captions`` (one per face), each frame shows its face's caption under it;
        ``size``: the frames drawn at that size (Lanczos)."""
        frames = []
        for image, target in self._frames_to(latents, cuts):
            if size is not None:
                image = display_size(image, size)
            frames.append(captioned(image, captions[target]) if captions is not None else image)
        per_step = self.backend.capabilities.gif_frames_per_step
        durations = [60 if per_step > 1 else 500] * len(frames)
        durations[0] = durations[-1] = 800  # linger on the start and the end
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.stem}-{uuid.uuid4().hex[:8]}.gif")
        frames[0].save(partial, save_all=True, append_images=frames[1:], duration=durations, loop=0)
        os.replace(partial, out)
        return out


def captioned(image: Image.Image, caption: str, band: int = 40) -> Image.Image:
    """``image`` with ``caption`` (up to two lines) in a white band under it."""
    out = Image.new("RGB", (image.width, image.height + band), "white")
    out.paste(image, (0, 0))
    lines = textwrap.wrap(caption.replace("→", " to "), max(12, image.width // 8)) or [""]
    text = "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")
    font = ImageFont.load_default(size=max(10, band // 3))
    ImageDraw.Draw(out).multiline_text((6, image.height + 3), text, fill="black", spacing=2, font=font)
    return out


def path_key(latents: list[torch.Tensor]) -> tuple[str, ...]:
    """What identifies a path: the digests of its faces."""
    return tuple(_digest(w) for w in latents)


def _digest(latent: torch.Tensor) -> str:
    w = latent.detach().to("cpu", torch.float32).contiguous()
    return hashlib.blake2b(w.numpy().tobytes() + str(tuple(w.shape)).encode(), digest_size=16).hexdigest()


__all__ = ["EditPathFrames", "GIF_MAX_FRAMES", "captioned", "path_key", "plan"]
