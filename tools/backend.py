"""The backend contract: everything the walk, the editor, the session service and the page use.

A backend holds a generator's latent space and the models that read it. It subclasses
``Backend``, implements the abstract members, and states what else it can do in its
``capabilities``; nothing in ChatEdit probes a backend for members. Optional members
(``degree_offset``, ``polish``, ``with_scene``) are called only when the matching capability is on,
and raise ``NotImplementedError`` otherwise. Which backends exist, their options and what they need is the
registry's business (``chatedit.tools.registry``).

Latent codes are whatever the backend makes of them: (1, w_dim) for the built-in backend, (1,
n_latent, 512) W+ codes for StyleGAN2, a photo key and strengths for diffusion. The walk only adds
them up and scales them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Literal, Protocol

import torch
from PIL import Image

Method = Literal["field", "linear"]


class BackendError(RuntimeError):
    """A backend could not draw or read a face (out of memory, a photo no longer loaded, ...).

    The message is a sentence for the person; the editor reports it and changes nothing."""


class Reading(Protocol):
    degrees: torch.Tensor  # (B, A) integer degree per attribute
    expected: torch.Tensor  # (B, A) expected degree
    probs: torch.Tensor | None  # (B, A, D) the distribution over degrees, when the reader has one


@dataclass(frozen=True)
class PredictorReading:
    """What a classifier over degrees reads: argmax degree, expected degree, and the distribution."""

    degrees: torch.Tensor  # (B, A) integer degree per attribute
    expected: torch.Tensor  # (B, A) expected degree under the predicted distribution
    probs: torch.Tensor  # (B, A, D)

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> "PredictorReading":
        return cls.from_probs(logits.softmax(-1))

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> "PredictorReading":
        expected = (probs * torch.arange(probs.shape[-1], device=probs.device)).sum(-1)
        return cls(probs.argmax(-1), expected, probs)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the required members, and how the walk and the page treat it."""

    substeps: int = 8  # walk steps per degree of change (fewer, larger ones where a step is a denoising pass)
    max_steps: int = 64  # walk steps per edit
    previews: bool = False  # ``generate(w, on_preview=...)`` shows images drawn on the way to one frame
    degree_offsets: bool = False  # ``degree_offset`` is implemented: field walks jump, repair and nudge with it
    polish: bool = False  # ``polish`` is implemented: field walks end with a gradient polish of the code
    streams_inversion: bool = True  # ``encode(..., on_progress=...)`` shows the reconstruction forming
    refine_steps: int = 40  # optimisation steps after the encoder's guess when a photo is uploaded
    min_fit_psnr: float = 0.0  # an upload redrawn worse than this (dB) holds no face the backend can edit
    gif_frames_per_step: int = 6  # frames per history step in the edit-path GIF (1: each step a whole pass)
    photos: bool = False  # edits real photographs (aligned at intake); False: draws its own portraits
    methods: tuple[Method, ...] = ("field",)  # edit methods ``step`` takes; "linear" is a baseline to compare with
    scenes: bool = False  # ``with_scene`` is implemented: the face is drawn in a scene the chat can change

    def __post_init__(self):
        if self.substeps < 1 or self.max_steps < 1 or self.gif_frames_per_step < 1 or self.refine_steps < 0:
            raise ValueError(f"capabilities out of range: {self}")


class Backend(ABC):
    """A latent space with a generator, an attribute reader, an identity model and edit directions."""

    name: str
    attributes: tuple[str, ...]  # the order of ``predict``'s columns and ``step``'s attribute index
    resolution: int  # side of the square faces ``intake`` returns and ``encode`` takes
    device: torch.device
    capabilities: Capabilities = Capabilities()
    compute_dtype: torch.dtype = torch.float32  # the networks' arithmetic (frames, readings and codes stay float32)

    # ----------------------------------------------------------------- faces in and out

    @abstractmethod
    def intake(self, picture: Image.Image) -> torch.Tensor:
        """A picture as a (3, resolution, resolution) face in [0, 1], found and aligned as the backend
        needs; raises ``chatedit.tools.align.NoFaceFound`` when there is no face to edit."""

    @abstractmethod
    def sample(self, seed: int) -> torch.Tensor:
        """A new face's latent for ``seed``: the same seed gives the same face on every machine and turn."""

    @abstractmethod
    def encode(self, image: torch.Tensor, refine_steps: int = 0,
               on_progress: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """Latents for images (B, 3, resolution, resolution) in [0, 1]. ``on_progress(step, image)`` sees
        the reconstruction (3, H, W) forming (when ``capabilities.streams_inversion``)."""

    @abstractmethod
    def generate(self, w: torch.Tensor,
                 on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] for latents ``w``. ``on_preview(image)`` is called with images
        drawn on the way to the result, on backends with ``capabilities.previews``; others ignore it."""

    # ----------------------------------------------------------------- reading faces

    @abstractmethod
    def predict(self, image: torch.Tensor) -> Reading:
        """The degree of every attribute in images (B, 3, H, W)."""

    @abstractmethod
    def identity(self, image: torch.Tensor) -> torch.Tensor | None:
        """Identity embeddings (B, E) of images, or None when the backend has no identity model."""

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """How alike faces with identity embeddings ``a`` and ``b`` (B, E) are, in [0, 1] (B,): the
        cosine, clamped at 0. A backend whose identity model has its own calibrated reading (dlib's
        distance) overrides it, so the page, the walk and the benchmarks say the same number."""
        a, b = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b.to(a.device), dim=-1)
        return (a * b).sum(-1).clamp(0, 1)

    # ----------------------------------------------------------------- what the walk needs

    @abstractmethod
    def step(self, method: Method, attribute: int, w: torch.Tensor, direction: int = 1) -> torch.Tensor:
        """The latent change that moves ``attribute`` one degree up (``direction`` 1) or down (-1) at ``w``."""

    @abstractmethod
    def latent_distance(self, w: torch.Tensor) -> torch.Tensor:
        """How far ``w`` is from where real codes live (walks stop well past a face's own distance)."""

    def degree_offset(self, attribute: int, w: torch.Tensor, from_degree: int, to_degree: int) -> torch.Tensor:
        """The average latent change from one degree of ``attribute`` to another, the others held
        (only with ``capabilities.degree_offsets``)."""
        raise NotImplementedError(f"the {self.name} backend has no degree offsets")

    def polish(self, w: torch.Tensor, attribute: int, target: int, keep: torch.Tensor,
               identity: torch.Tensor | None = None, steps: int | None = None,
               on_preview: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
        """A code near ``w`` that reads ``target`` more surely, the other attributes as the
        distributions ``keep`` (A, D) and the face as ``identity`` (only with ``capabilities.polish``).
        ``on_preview(image)`` is called with the (3, H, W) image of each step on the way."""
        raise NotImplementedError(f"the {self.name} backend has no polish")

    def with_scene(self, w: torch.Tensor, scene: str | None) -> torch.Tensor:
        """``w`` with the face unchanged, drawn in ``scene`` from now on (None: the backend's own scene;
        only with ``capabilities.scenes``)."""
        raise NotImplementedError(f"the {self.name} backend draws no scenes")


__all__ = ["Backend", "BackendError", "Capabilities", "Method", "PredictorReading", "Reading"]
