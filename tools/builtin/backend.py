"""The built-in backend: encode, generate, predict and identify with the shipped models.

Faces live as latent codes ``w`` (B, w_dim). A new face is a fresh render pushed through the
encoder, so sampled faces are always ones the generator has learned to draw. Uploaded images are
inverted with the encoder and then a short optimisation of ``w`` against the pixels.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from chatedit.attributes import attribute_names
from chatedit.images import from_pil

from ..backend import Backend, Capabilities, PredictorReading
from .fields import latent_precision, mahalanobis
from .loading import (ATTRIBUTES_FILE, FIELD_FILE, LINEAR_FILE, MODEL_FILES, OFFSETS_FILE, WEIGHTS_DIR, BuiltinModels,
                      load_builtin)
from .renderer import render, sample_portraits


# The walk's closing polish: Adam steps on the code, and the weights of its terms. Six steps cost
# about 230 ms on two CPU threads. Ten steps without the identity term read 1-4 points more exact
# but cost 100 ms more and lowered age edits' identity similarity by 0.03, under the linear
# baseline's; with the term, six steps raise it by 0.01. (Learning rate 0.05: identity fell to 0.67.)
POLISH_STEPS, POLISH_LR = 6, 0.01
KEEP_WEIGHT, STAY_WEIGHT, IDENTITY_WEIGHT = 1.0, 0.5, 1.0
PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` is a CPU that computes bfloat16 in hardware (AVX-512 BF16 or AMX). Elsewhere
    bfloat16 convolutions are emulated and slower than float32."""
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check is not None and check() for check in checks)


def missing_files(weights_dir: str | Path | None = None) -> list[str]:
    """The model files ``load`` needs that are not in ``weights_dir`` (default: the shipped ones)."""
    root = Path(weights_dir or WEIGHTS_DIR)
    names = [*MODEL_FILES.values(), LINEAR_FILE, OFFSETS_FILE, ATTRIBUTES_FILE,
             *(FIELD_FILE.format(name=a) for a in attribute_names())]
    return [name for name in names if not (root / name).is_file()]


class BuiltinBackend(Backend):
    name = "builtin"
    resolution = 128
    # uploads it redraws worse than this (dB) are not portraits of its world (renders: 29-31 dB after
    # refinement, blurred ones 25; noise, screenshots and gradients: 11-13)
    capabilities = Capabilities(degree_offsets=True, polish=True, min_fit_psnr=18.0, methods=("field", "linear"))

    def __init__(self, models: BuiltinModels, precision: str | None = None):
        """``precision``: "float32", "bfloat16", or "auto" (the default, or ``CHATEDIT_PRECISION``):
        bfloat16 on a CPU that computes it in hardware, float32 elsewhere. In bfloat16 the networks'
        convolutions and matrix products run under autocast while everything the walk and the
        person see stays float32: frames, readings, codes. On the 2-core AMD EPYC it takes a walk
        frame (G, P and P2) from 11.1 to 8.9 ms; training and the fit of an upload stay float32."""
        precision = precision or os.environ.get("CHATEDIT_PRECISION", "auto")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.models = models
        self.device = models.device
        if precision == "auto":
            precision = "bfloat16" if native_bfloat16(self.device) else "float32"
        self.compute_dtype = getattr(torch, precision)
        self.attributes = attribute_names()
        # computed once: the walk checks every step's distance from where real codes live
        self.precision = latent_precision(models.generator)

    @classmethod
    def load(cls, weights_dir: str | Path | None = None, device: str | None = None,
             precision: str | None = None) -> "BuiltinBackend":
        return cls(load_builtin(weights_dir, device), precision)

    @classmethod
    def from_options(cls, options) -> "BuiltinBackend":
        """The backend from its registry options (``plugin.BuiltinOptions``)."""
        return cls.load(options.weights, options.device, options.precision)

    def _autocast(self):
        """The context the networks run in: bfloat16 autocast, or none."""
        if self.compute_dtype != torch.float32:
            return torch.autocast(self.device.type, dtype=self.compute_dtype)
        return contextlib.nullcontext()

    def intake(self, picture: Image.Image) -> torch.Tensor:
        """A photo as a (3, 128, 128) face: centre-cropped, as its own renders are already aligned."""
        return from_pil(picture, self.resolution)

    @torch.no_grad()
    def sample(self, seed: int) -> torch.Tensor:
        """A new face for ``seed``: the same seed gives the same face on every machine and turn."""
        image = render(sample_portraits(1, seed)).to(self.device)
        return self.models.encoder(image)

    def encode(self, image: torch.Tensor, refine_steps: int = 0, lr: float = 0.03,
               on_progress: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Latent codes (B, w_dim) for images (B, 3, 128, 128) in [0, 1]: E, then optimisation.

        The optimisation minimises pixel error plus a light Mahalanobis pull towards the codes of
        training faces, so an unusual photo does not drag ``w`` off the learned face space.
        ``on_progress(step, image)`` sees the first image's reconstruction (3, 128, 128) every tenth
        refinement step (step 0: the encoder's guess), drawn before that step's update.
        """
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, self.resolution, self.resolution):
            raise ValueError(f"images must be (B, 3, {self.resolution}, {self.resolution}), got {tuple(image.shape)}")
        image = image.to(self.device)
        with torch.no_grad():
            w = self.models.encoder(image)
        if refine_steps <= 0:
            return w
        generator = self.models.generator
        precision = self.precision
        w = w.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        for step in range(refine_steps):
            centred = w - generator.w_mean
            prior = torch.einsum("bi,ij,bj->b", centred, precision, centred).mean() / generator.w_dim
            drawn = generator(w)
            loss = F.mse_loss(drawn, image) + 1e-4 * prior
            opt.zero_grad()
            loss.backward()
            opt.step()
            if on_progress is not None and step % 10 == 0:
                on_progress(step, drawn[0].detach().clamp(0, 1))
        return w.detach()

    @torch.no_grad()
    def generate(self, w: torch.Tensor, on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        return self._draw(w.to(self.device))

    def _draw(self, w: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.models.generator(w).float()

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> PredictorReading:
        """What the two steering predictors read, their probabilities averaged.

        A walk stops where its reader says the target degree is, so it finds the reader's blind
        spots: frames one predictor reads as the target and others do not. Two predictors of
        other widths, seeds and training seldom share them. With the second one, edits graded by
        the independent evaluation predictor landed exactly about 2 points more often on average
        over two 200-face sets (age most: 88.5% → 91.5% and 86.0% → 94.5%).
        """
        return PredictorReading.from_probs(self._steering_probs(image.to(self.device)))

    def _steering_probs(self, image: torch.Tensor) -> torch.Tensor:
        """(B, A, D): the two steering predictors' distributions over degrees, averaged."""
        with self._autocast():
            logits = self.models.predictor(image), self.models.second_predictor(image)
        return (logits[0].float().softmax(-1) + logits[1].float().softmax(-1)) / 2

    @torch.no_grad()
    def identity(self, image: torch.Tensor) -> torch.Tensor:
        return self._embed(image.to(self.device))

    def _embed(self, image: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            embedding = self.models.identity(image)
        return F.normalize(embedding.float(), dim=-1)  # again in float32: bfloat16 rounds the unit norm

    # ----------------------------------------------------------------- what the walk needs

    @torch.no_grad()
    def step(self, method: str, attribute: int, w: torch.Tensor, direction: int = 1) -> torch.Tensor:
        """The latent change that moves ``attribute`` one degree up (``direction`` 1) or down (-1) at
        ``w``: the field's, or the linear baseline's."""
        if method == "field":
            return self.models.fields[attribute](w, direction)
        if method == "linear":
            return self.models.linear(attribute, w, direction)
        raise ValueError(f"unknown edit method {method!r}; use 'field' or 'linear'")

    def degree_offset(self, attribute: int, w: torch.Tensor, from_degree: int, to_degree: int) -> torch.Tensor:
        """The average latent change from one degree of ``attribute`` to another, the others held."""
        return self.models.offsets(attribute, w, from_degree, to_degree)

    def polish(self, w: torch.Tensor, attribute: int, target: int, keep: torch.Tensor,
               identity: torch.Tensor | None = None, steps: int | None = None,
               on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """A code near ``w`` (1, w_dim) that the steering predictors read as ``target`` more surely,
        with the other attributes read as the distributions ``keep`` (A, D) and the face as
        ``identity`` (1, E) when given: ``steps`` (default ``POLISH_STEPS``) Adam steps on the
        cross-entropy of the target degree, the other attributes' KL divergence from ``keep``, the
        squared distance from ``w`` and the identity similarity (negated). Only ``w`` gets
        gradients, so sessions can share the models. ``on_preview`` sees each step's image."""
        start = w.detach().to(self.device)
        others = [b for b in range(len(self.attributes)) if b != attribute]
        held = keep.to(self.device)[others]
        held_log = held.clamp_min(1e-6).log()
        if identity is not None:
            identity = identity.to(self.device)
        w = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=POLISH_LR)
        with torch.enable_grad():
            for _ in range(POLISH_STEPS if steps is None else steps):
                image = self._draw(w)
                if on_preview is not None:
                    on_preview(image[0].detach())
                log = self._steering_probs(image)[0].clamp_min(1e-6).log()
                loss = -log[attribute, target]
                loss = loss + KEEP_WEIGHT * (held * (held_log - log[others])).sum()
                loss = loss + STAY_WEIGHT * (w - start).pow(2).sum()
                if identity is not None:
                    loss = loss - IDENTITY_WEIGHT * (self._embed(image) * identity).sum()
                (w.grad,) = torch.autograd.grad(loss, w)
                opt.step()
        return w.detach()

    @torch.no_grad()
    def latent_distance(self, w: torch.Tensor) -> torch.Tensor:
        return mahalanobis(self.models.generator, w, self.precision)
