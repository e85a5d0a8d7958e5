"""The scene of a W+ face: the prompt Stable Diffusion draws the person into, carried in the latent.

A face on this backend is its W+ code and a scene. The scene travels inside the latent, so undo,
redo, the session store and restarts keep it with no table beside the model: after the W+ rows
come ``scene_rows`` rows holding the prompt's characters, one Unicode code point per entry (every
code point is below 2**24, so float32 holds it exactly), zeros after the last character. All zeros
is the backend's own prompt (``--prompt``). The walk never moves these rows (``step`` leaves them
at zero) and the distance ignores them. A frame interpolated between two scenes (the edit-path GIF)
rounds to whatever characters lie between: a passing blur of text, never an error.

The tool that changes it, and the check of its text, are the backends' shared ``chatedit.scenes``.
"""

from __future__ import annotations

import math

import torch

from chatedit.scenes import MAX_SCENE_CHARS, check_scene

MAX_CODE_POINT = 0x10FFFF


def scene_rows(style_dim: int) -> int:
    """Rows of ``style_dim`` entries that hold the longest scene."""
    return math.ceil(MAX_SCENE_CHARS / style_dim)


def encode_scene(text: str | None, rows: int, style_dim: int) -> torch.Tensor:
    """(rows, style_dim) holding ``text`` (None: the backend's own prompt, all zeros)."""
    out = torch.zeros(rows * style_dim)
    if text is not None:
        scene = check_scene(text)
        if len(scene) > out.numel():
            raise ValueError(f"{rows} scene rows of {style_dim} hold {out.numel()} characters, not {len(scene)}")
        out[: len(scene)] = torch.tensor([float(ord(c)) for c in scene])
    return out.view(rows, style_dim)


def decode_scene(rows: torch.Tensor) -> str | None:
    """The scene held in (rows, style_dim); None when it is the backend's own prompt (all zeros)."""
    codes = [round(v) for v in rows.flatten().tolist()]
    while codes and codes[-1] == 0:
        codes.pop()
    if not codes:
        return None
    text = "".join(chr(c) if 0 < c <= MAX_CODE_POINT and not 0xD800 <= c <= 0xDFFF else " " for c in codes)
    return "".join(c if c.isprintable() else " " for c in text).strip() or None
