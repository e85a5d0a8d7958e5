"""The built-in backend's networks: plain ``nn.Module``s that do no I/O.

Every constructor takes only keyword arguments of plain types, which the loader saves next to
the weights (``config``), so a checkpoint rebuilds itself without magic numbers at call sites.

- ``Encoder`` E: image (B, 3, 128, 128) → latent w (B, w_dim).
- ``Generator`` G: w → image, with FiLM modulation from w at every resolution.
- ``AttributePredictor`` P: image → logits (B, num_attributes, num_degrees).
- ``IdentityEncoder`` I: image → unit-norm embedding (B, embed_dim).

Models sized by the attributes (P, ``LinearDirections``, ``DegreeOffsets``) take
``num_attributes`` from their caller and have no default: their rows follow the vocabulary of
``prompts/attributes.yaml``, which the trainer passes and records, and the loader checks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4), channels)


class ResBlock(nn.Module):
    """Pre-activation residual block: norm, SiLU, conv, twice."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(channels), _conv(channels, channels)
        self.norm2, self.conv2 = _norm(channels), _conv(channels, channels)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Backbone(nn.Module):
    """A small strided CNN: (B, 3, 128, 128) → (B, channels[-1], 128 / 2**(len(channels)+1), ...).

    The image is first folded into 4×4 patches (pixel unshuffle), which keeps every pixel while
    moving the work to 32×32 maps, where convolutions are cheap on a CPU.
    """

    def __init__(self, channels: tuple[int, ...], patch: int = 4, res_blocks: bool = True):
        super().__init__()
        self.patch = patch
        layers: list[nn.Module] = [_conv(3 * patch * patch, channels[0])]
        if res_blocks:
            layers.append(ResBlock(channels[0]))
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [nn.SiLU(), _conv(cin, cout, stride=2)]
            if res_blocks:
                layers.append(ResBlock(cout))
        layers.append(nn.SiLU())
        self.layers = nn.Sequential(*layers)

    def forward(self, image):
        return self.layers(F.pixel_unshuffle(image * 2 - 1, self.patch))


class Encoder(nn.Module):
    def __init__(self, w_dim: int = 64, channels: tuple[int, ...] = (48, 96, 192, 256), hidden: int = 512):
        super().__init__()
        self.config = dict(w_dim=w_dim, channels=list(channels), hidden=hidden)
        self.backbone = Backbone(tuple(channels))
        size = 128 // 4 // 2 ** (len(channels) - 1)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels[-1] * size * size, hidden), nn.SiLU(), nn.Linear(hidden, w_dim)
        )

    def forward(self, image):
        return self.head(self.backbone(image))


class FiLMBlock(nn.Module):
    """Upsample ×2, conv, group norm with a per-channel scale and shift from w, conv."""

    def __init__(self, cin: int, cout: int, w_dim: int):
        super().__init__()
        self.conv1 = _conv(cin, cout)
        self.norm = nn.GroupNorm(min(8, cout // 4), cout, affine=False)
        self.film = nn.Linear(w_dim, 2 * cout)
        self.conv2 = _conv(cout, cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x, w):
        h = self.conv1(F.interpolate(x, scale_factor=2, mode="nearest"))
        scale, shift = self.film(w)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm(h) * (1 + scale) + shift)
        return h + self.conv2(h)


class Generator(nn.Module):
    def __init__(self, w_dim: int = 64, channels: tuple[int, ...] = (256, 192, 96, 48, 24)):
        super().__init__()
        self.config = dict(w_dim=w_dim, channels=list(channels))
        self.w_dim = w_dim
        self.start = channels[0]
        self.input = nn.Linear(w_dim, channels[0] * 4 * 4)
        self.blocks = nn.ModuleList(
            FiLMBlock(cin, cout, w_dim) for cin, cout in zip(channels[:-1], channels[1:])
        )
        # 4×4 → 64×64 over the blocks; the last conv writes 2×2 patches that fold out to 128×128
        self.to_rgb = _conv(channels[-1], 3 * 4)
        # Statistics of encoded training faces: where real codes live (for sampling and regularising).
        self.register_buffer("w_mean", torch.zeros(w_dim))
        self.register_buffer("w_cov", torch.eye(w_dim))

    def forward(self, w):
        x = self.input(w).view(-1, self.start, 4, 4)
        for block in self.blocks:
            x = block(x, w)
        return torch.sigmoid(F.pixel_shuffle(self.to_rgb(F.silu(x)), 2))


class AttributePredictor(nn.Module):
    def __init__(self, *, num_attributes: int, num_degrees: int = 6, channels: tuple[int, ...] = (64, 128, 256),
                 patch: int = 4, res_blocks: bool = True):
        super().__init__()
        self.config = dict(num_attributes=num_attributes, num_degrees=num_degrees, channels=list(channels),
                           patch=patch, res_blocks=res_blocks)
        self.num_attributes, self.num_degrees = num_attributes, num_degrees
        self.backbone = Backbone(tuple(channels), patch=patch, res_blocks=res_blocks)
        self.head = nn.Linear(2 * channels[-1], num_attributes * num_degrees)

    def forward(self, image):
        h = self.backbone(image)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        # (B, num_attributes, num_degrees) logits per attribute and degree
        return self.head(h).view(-1, self.num_attributes, self.num_degrees)

    def read(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        """Degrees (B, A) as integers and as expected values under the predicted distribution."""
        probs = self(image).softmax(-1)
        expected = (probs * torch.arange(self.num_degrees, device=probs.device)).sum(-1)
        return probs.argmax(-1), expected


class IdentityEncoder(nn.Module):
    def __init__(self, embed_dim: int = 128, channels: tuple[int, ...] = (48, 96, 192)):
        super().__init__()
        self.config = dict(embed_dim=embed_dim, channels=list(channels))
        self.backbone = Backbone(tuple(channels))
        self.head = nn.Linear(2 * channels[-1], embed_dim)

    def forward(self, image):
        h = self.backbone(image)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return F.normalize(self.head(h), dim=-1)


def identity_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two embeddings, clipped to [0, 1] (unrelated faces score near 0)."""
    return (a * b).sum(-1).clamp(0, 1)


class LatentField(nn.Module):
    """A semantic field for one attribute: at every latent ``w``, the step that moves it one degree
    up, and the step that moves it one degree down.

    The two are separate outputs of one network rather than one step walked backwards: a degree
    scale need not be a straight line through face space. Eyeglasses go clear thin frame (2),
    clear thick frame (3), dark thin frame (4), dark thick frame (5): from 4, one degree up thickens
    the frame and one degree down thickens it too (and clears the lenses), which no single vector
    and its negative can say; with one signed field the walk jumped from 3 to 5 and never found 4.

    One small network per attribute (rather than one conditioned network): each attribute's field
    trains, ships and is replaced on its own, and a new attribute adds a file without retraining
    the others. Each output starts as a constant (the linear baseline's step, up and down, set by
    the trainer) and the network learns how the direction bends across the space.
    """

    def __init__(self, w_dim: int = 64, hidden: int = 256):
        super().__init__()
        self.config = dict(w_dim=w_dim, hidden=hidden)
        self.net = nn.Sequential(nn.Linear(w_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * w_dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.register_buffer("base", torch.zeros(2, w_dim))  # the constant part of the up and down steps

    def forward(self, w: torch.Tensor, direction: torch.Tensor | float = 1.0) -> torch.Tensor:
        """The latent change (B, w_dim) one degree up (``direction`` > 0) or down (< 0), per row."""
        steps = (self.base + self.net(w).view(-1, 2, self.base.shape[-1]))  # (B, 2, w_dim): up, down
        direction = torch.as_tensor(direction, device=w.device).reshape(-1, 1)
        return torch.where(direction > 0, steps[:, 0], steps[:, 1])


class DegreeOffsets(nn.Module):
    """Where each degree of each attribute sits in latent space, the other attributes held:
    codes are fit as ``w ≈ b + Σ_a offsets[a, degree_a]``. ``offsets[a, t] − offsets[a, c]`` is the
    average change from degree c to degree t, one jump straight to the target degree. The walk
    tries it when the field's way to a degree is blocked: eyeglasses go thick clear frame (3),
    thin-frame sunglasses (4), thick-frame sunglasses (5), and the field's way from 3 to 4 looks
    like 5."""

    def __init__(self, w_dim: int = 64, *, num_attributes: int, num_degrees: int = 6):
        super().__init__()
        self.config = dict(w_dim=w_dim, num_attributes=num_attributes, num_degrees=num_degrees)
        self.register_buffer("offsets", torch.zeros(num_attributes, num_degrees, w_dim))

    def forward(self, attribute: int, w, from_degree: int, to_degree: int):
        """The latent change (B, w_dim) from the average face at ``from_degree`` to ``to_degree``."""
        return (self.offsets[attribute, to_degree] - self.offsets[attribute, from_degree]).expand_as(w)


class LinearDirections(nn.Module):
    """The linear baseline: one global latent step per attribute that raises it by one degree."""

    def __init__(self, w_dim: int = 64, *, num_attributes: int):
        super().__init__()
        self.config = dict(w_dim=w_dim, num_attributes=num_attributes)
        self.register_buffer("steps", torch.zeros(num_attributes, w_dim))

    def forward(self, attribute: int, w, direction: torch.Tensor | float = 1.0):
        """The latent change (B, w_dim) one degree up (``direction`` > 0) or down: one line, walked either way."""
        direction = torch.as_tensor(direction, device=w.device, dtype=w.dtype).reshape(-1, 1).sign()
        return direction * self.steps[attribute].expand_as(w)
