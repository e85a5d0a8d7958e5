"""Pivotal Tuning (Roich et al., 2021) for the StyleGAN2 backend: a generator fitted to one photo.

After a photo's W+ inversion (the pivot), ``tune`` fine-tunes the synthesis network's weights for
a few steps so that the pivot draws the photo more closely; the mapping network, which the fields
read, is left as it is. Only MSE in [-1, 1] pixel space is used (the paper adds LPIPS, whose
weights we do not have), in float32, on a throwaway copy of the generator: the shared generator is
never changed, and what comes back is the tuned tensor of each synthesis parameter that moved.

A tuned generator belongs to one photo. Its ``Recipe`` (the photo's 8-bit pixels, the pivot, the
step count and learning rate) is all a tune needs, and ``Recipe.key`` names it in 48 bits: the
backend writes that key into the latent (two float32 halves, each exact below 2**24) and redoes
the tune from a saved recipe after a restart, pixel for pixel the same on the same machine.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .generator import Generator, to_image01

logger = logging.getLogger(__name__)

MAPPING = "style."  # parameter names of the mapping network, never tuned


@dataclass(frozen=True)
class Recipe:
    """Everything one photo's tune depends on."""

    photo: torch.Tensor  # (3, R, R) uint8, the photo as uploaded
    pivot: torch.Tensor  # (1, n_latent, C) float32 on the CPU, its W+ inversion
    steps: int
    lr: float

    @property
    def key(self) -> int:
        """48 bits of a hash of the recipe; never 0, which the latent uses for the untuned generator."""
        digest = hashlib.sha256(self.photo.contiguous().numpy().tobytes())
        digest.update(self.pivot.float().contiguous().numpy().tobytes())
        digest.update(f"{self.steps}:{self.lr!r}".encode())
        return int.from_bytes(digest.digest()[:6], "big") or 1

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"photo": self.photo, "pivot": self.pivot, "steps": self.steps, "lr": self.lr},
                   folder / f"{self.key:012x}.pt")

    @classmethod
    def load(cls, folder: Path, key: int) -> Recipe | None:
        """The recipe saved for ``key`` in ``folder``, or None when there is none."""
        path = folder / f"{key:012x}.pt"
        if not path.is_file():
            return None
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return cls(saved["photo"], saved["pivot"], int(saved["steps"]), float(saved["lr"]))


def synthesis_names(generator: Generator) -> list[str]:
    """The parameters Pivotal Tuning changes: every one outside the mapping network."""
    return [n for n, _ in generator.named_parameters() if not n.startswith(MAPPING)]


@torch.enable_grad()  # also when called while drawing (``generate`` redoing a dropped tune, under no_grad)
def tune(generator: Generator, recipe: Recipe, on_progress: Callable[[int, torch.Tensor], None] | None = None,
         first_step: int = 0) -> dict[str, torch.Tensor]:
    """Fine-tunes a copy of ``generator``'s synthesis network on ``recipe``'s photo at its pivot.

    Returns the tuned tensors by parameter name, only those that moved. ``on_progress(step, image)``
    sees the reconstruction (3, R, R) every tenth step, drawn before that step's update, with steps
    numbered from ``first_step`` (the backend continues the W+ inversion's numbering).
    """
    device = generator.device
    tuner = copy.deepcopy(generator).float()  # throwaway: the shared generator is never changed
    names = set(synthesis_names(tuner))
    params = [p.requires_grad_(True) for n, p in tuner.named_parameters() if n in names]
    pivot = recipe.pivot.to(device)
    target = recipe.photo.to(device).float()[None] / 255 * 2 - 1  # (1, 3, R, R) in [-1, 1]
    opt = torch.optim.Adam(params, lr=recipe.lr)
    first = None  # the error at the pivot before any step, for the log
    for step in range(recipe.steps):
        out = tuner.synthesis(pivot)
        loss = F.mse_loss(out, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
        if on_progress is not None and step % 10 == 0:
            on_progress(first_step + step, to_image01(out[0].detach()).clamp(0, 1))
    if first is not None and logger.isEnabledFor(logging.INFO):
        with torch.no_grad():
            after = float(F.mse_loss(tuner.synthesis(pivot), target))
        logger.info("Pivotal Tuning: %.1f dB at the pivot, %.1f dB after %d steps", _psnr(first), _psnr(after),
                    recipe.steps)
    base = dict(generator.named_parameters())
    return {n: p.detach() for n, p in tuner.named_parameters() if n in names and not torch.equal(p, base[n])}


def _psnr(mse_in_minus_one_to_one: float) -> float:
    """PSNR in dB of images in [0, 1] from an MSE measured in [-1, 1] (four times larger)."""
    return 10 * math.log10(4 / max(mse_in_minus_one_to_one, 1e-10))
