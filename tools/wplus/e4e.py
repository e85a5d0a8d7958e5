"""e4e, the encoder that inverts an aligned face photo into StyleGAN2's W+ (Tov et al., SIGGRAPH 2021).

Our module reproduces the parameter names of ``Encoder4Editing(50, 'ir_se')`` in
``omertov/encoder4editing`` (``models/encoders/psp_encoders.py`` and pSp's ``helpers.py``), so the
published ``e4e_ffhq_encode.pt`` loads strictly (``loading.load_e4e``):

- ``input_layer``: Conv 3→64 3×3 (no bias), BatchNorm, PReLU(64) (keys ``input_layer.{0,1,2}``);
- ``body``: IR-SE units in four stages, 3/4/14/3 units of widths 64/128/256/512, the first unit of
  each stage with stride 2. A unit is ``shortcut_layer`` (a stride-2 max-pool, no weights, when its
  width does not change; else ``Conv 1×1`` + BatchNorm as ``shortcut_layer.{0,1}``) plus
  ``res_layer`` = BatchNorm, Conv 3×3, PReLU, Conv 3×3 (the stride), BatchNorm, and an SE module
  (``res_layer.5.fc1``/``fc2``, 1×1 convs without bias, width / 16);
- ``styles``: one ``GradualStyleBlock`` per W+ row (18 at 1024 px): stride-2 3×3 convs with bias
  and LeakyReLU(0.01) (``convs.0``, ``convs.2``, …) down to 1×1, then an ``EqualLinear``
  (``linear.weight``, ``linear.bias``). Rows 0-2 read the coarsest features (16×16 for a 256 px
  input, 4 convs), rows 3-6 the middle ones (32×32, 5 convs), the rest the finest (64×64, 6 convs);
- ``latlayer1`` / ``latlayer2``: 1×1 convs (with bias) taking stage 3 and stage 2 to the style width
  for the feature pyramid, added to the bilinearly upsampled (``align_corners=True``) coarser level.

Forward (inference stage): row 0 is the W code, copied to every row; each later row adds its own
block's output (a delta), and pSp adds the checkpoint's ``latent_avg`` (the caller does that).
Input: the aligned face at 256 px, normalised to [-1, 1].

The published configuration is the constructor's default; narrower ``widths``, fewer ``units``, a
smaller ``input_size`` and fewer ``rows`` keep the same names and structure (the tests use them).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..stylegan2.generator import EqualLinear

COARSE, MIDDLE = 3, 7  # the first rows read from the middle and the finest pyramid levels
SE_REDUCTION = 16


class _SE(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // SE_REDUCTION, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // SE_REDUCTION, channels, 1, bias=False)

    def forward(self, x):
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * gate


class _IRSE(nn.Module):
    """pSp's ``bottleneck_IR_SE``."""

    def __init__(self, cin: int, depth: int, stride: int):
        super().__init__()
        self.stride = stride
        if cin != depth:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        else:  # rosinality-era max-pool of size 1: a plain subsampling, no weights
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin), nn.Conv2d(cin, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth), _SE(depth),
        )

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


class _GradualStyleBlock(nn.Module):
    def __init__(self, width: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(width, width, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(width, width)
        self.width = width

    def forward(self, x):
        return self.linear(self.convs(x).reshape(-1, self.width))


class E4EEncoder(nn.Module):
    """An aligned face (B, 3, S, S) in [-1, 1] → W+ offsets from ``latent_avg`` (B, rows, style_dim)."""

    def __init__(self, rows: int = 18, widths: Sequence[int] = (64, 128, 256, 512),
                 units: Sequence[int] = (3, 4, 14, 3), input_size: int = 256):
        super().__init__()
        # 1. check inputs
        widths, units = [int(w) for w in widths], [int(u) for u in units]
        if len(widths) != 4 or len(units) != 4 or min(units) < 1:
            raise ValueError(f"e4e has four stages: `widths` and `units` need four values each (units ≥ 1), "
                             f"got {widths} and {units}")
        if input_size % 16 or input_size < 32:
            raise ValueError(f"`input_size` must be a multiple of 16 of at least 32 but is {input_size}")
        if rows < 1:
            raise ValueError(f"`rows` must be at least 1 but is {rows}")
        self.config = dict(rows=rows, widths=widths, units=units, input_size=input_size)
        self.rows, self.input_size = rows, input_size
        style = widths[-1]  # the pyramid adds the last stage to the lateral layers: one width, the style's

        # 2. build, in the published attribute order (= state dict order)
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                         nn.PReLU(widths[0]))
        body, cin = [], widths[0]
        self.stage_ends = []  # body indices whose outputs are c1 (stage 2), c2 (stage 3) and c3 (stage 4)
        for width, count in zip(widths, units):
            for k in range(count):
                body.append(_IRSE(cin, width, 2 if k == 0 else 1))
                cin = width
            self.stage_ends.append(len(body) - 1)
        self.body = nn.Sequential(*body)
        coarse = input_size // 16  # c3's side: 16 for a 256 px face
        self.styles = nn.ModuleList(
            _GradualStyleBlock(style, coarse if i < COARSE else 2 * coarse if i < MIDDLE else 4 * coarse)
            for i in range(rows))
        self.latlayer1 = nn.Conv2d(widths[2], style, 1)
        self.latlayer2 = nn.Conv2d(widths[1], style, 1)

    @property
    def style_dim(self) -> int:
        return self.config["widths"][-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"e4e takes faces (B, 3, {size}, {size}) in [-1, 1], got {tuple(x.shape)}")
        # 1. the backbone; keep the ends of stages 2, 3 and 4
        x = self.input_layer(x)
        features = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends[1:]:
                features.append(x)
        c1, c2, c3 = features  # (B, w1, S/4, S/4), (B, w2, S/8, S/8), (B, style, S/16, S/16)
        # 2. row 0 is W on every row; each later row adds its delta, from finer levels further down
        w = self.styles[0](c3)[:, None].repeat(1, self.rows, 1)  # (B, rows, style)
        level = c3
        for i in range(1, self.rows):
            if i == COARSE:
                level = p2 = _upsample_add(c3, self.latlayer1(c2))
            elif i == MIDDLE:
                level = _upsample_add(p2, self.latlayer2(c1))
            w[:, i] = w[:, i] + self.styles[i](level)
        return w


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


def infer_config(state: dict[str, torch.Tensor], source: str) -> dict:
    """``E4EEncoder`` arguments read from an encoder state dict's keys and shapes (``encoder.`` stripped).

    Stages are runs of units of one width (as published: 64, 128, 256, 512), so neighbouring stages
    must differ in width; the input size follows from the coarsest style block's conv count."""
    def shape(key: str) -> tuple:
        if key not in state:
            raise ValueError(f"{source} is missing key 'encoder.{key}'; is it an e4e (Encoder4Editing) checkpoint?")
        return tuple(state[key].shape)

    rows = 0
    while f"styles.{rows}.linear.weight" in state:
        rows += 1
    depths = []
    while f"body.{len(depths)}.res_layer.1.weight" in state:
        depths.append(shape(f"body.{len(depths)}.res_layer.1.weight")[0])
    if not rows or not depths:
        key = "styles.0.linear.weight" if depths else "body.0.res_layer.1.weight"
        raise ValueError(f"{source} is missing key 'encoder.{key}'; is it an e4e (Encoder4Editing) checkpoint?")
    widths, units = [], []
    for depth in depths:
        if widths and widths[-1] == depth:
            units[-1] += 1
        else:
            widths.append(depth)
            units.append(1)
    if len(widths) != 4:
        raise ValueError(f"{source}: the encoder's body has {len(widths)} stages of widths {widths}, e4e has four")
    convs = 0
    while f"styles.0.convs.{2 * convs}.weight" in state:
        convs += 1
    return dict(rows=rows, widths=widths, units=units, input_size=16 * 2**convs)
