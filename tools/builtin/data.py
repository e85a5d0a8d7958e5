"""Training and evaluation sets drawn from the renderer."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from .models import Encoder
from .renderer import Portraits, render, sample_portraits, sample_variants


@dataclass
class RenderSet:
    """Renders grouped by person: ``variants`` consecutive rows share an identity."""

    images: torch.Tensor  # (N, 3, 128, 128) uint8
    portraits: Portraits  # the parameters behind each image
    person: torch.Tensor  # (N,) identity index, equal within a group of variants

    def __len__(self) -> int:
        return self.images.shape[0]

    def degrees(self) -> torch.Tensor:
        return self.portraits.degrees()

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx].float() / 255


def render_set(people: int, variants: int, seed: int, progress: bool = False, chunk: int = 128) -> RenderSet:
    """Renders ``people × variants`` portraits; each person appears with different attributes."""
    base = sample_portraits(people, seed)
    groups = [base] + [sample_variants(base, seed * 1000 + 17 + k, new_scene=1.0) for k in range(variants - 1)]
    # interleave so rows [i*variants, (i+1)*variants) are person i
    identity = torch.stack([g.identity for g in groups], 1).reshape(people * variants, -1)
    scene = torch.stack([g.scene for g in groups], 1).reshape(people * variants, -1)
    attributes = torch.stack([g.attributes for g in groups], 1).reshape(people * variants, -1)
    portraits = Portraits(identity, scene, attributes)
    images = torch.empty(len(portraits), 3, 128, 128, dtype=torch.uint8)
    starts = range(0, len(portraits), chunk)
    for start in tqdm(starts, desc=f"rendering {len(portraits)} portraits", disable=not progress, leave=False):
        part = portraits.index(slice(start, start + chunk))
        images[start : start + chunk] = (render(part) * 255).round().to(torch.uint8)
    person = torch.arange(people).repeat_interleave(variants)
    return RenderSet(images, portraits, person)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


@torch.no_grad()
def encode_all(encoder: Encoder, data: RenderSet, chunk: int = 256) -> torch.Tensor:
    """The codes (N, w_dim) of every image of ``data``."""
    return torch.cat([encoder(data.batch(torch.arange(s, min(s + chunk, len(data))))) for s in range(0, len(data), chunk)])
