"""Training the semantic fields and the linear baseline: ``chatedit train field``.

For each attribute a field network F maps a latent ``w`` to the step that raises the attribute
by one degree there, ``F(w, +1)``, and the step that lowers it, ``F(w, −1)`` (two outputs, not one
step walked backwards: see ``LatentField``). It is trained, through the frozen generator,
predictor and identity encoder, with
- the predictor's cross-entropy towards the current degree + 1 for the attribute after the up
  step (− 1 after the down step), and towards the current degree for every other attribute;
- an identity loss: 1 − cosine between identity embeddings before and after the step;
- a regulariser that keeps stepped codes where real codes live, in two parts: any growth of the
  Mahalanobis distance under the encoded training codes' Gaussian, and, because this world can
  render the same person one degree on, the distance from ``w + F(w, ±1)`` to the code of that render
  (E of the same identity, scene and other attributes with this attribute one degree up or down).
Each field starts as the linear baseline (a ridge regression of the rendered degree on ``w``,
whose normal is the global direction and whose slope sets the one-degree step; minus it for the
down step), is fitted to the
rendered pairs (cheap: no image is generated), then trained with all the terms above, so the
field learns how the best direction bends across the space rather than the direction from scratch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import RenderSet, encode_all
from .models import (AttributePredictor, DegreeOffsets, Encoder, Generator, IdentityEncoder, LatentField,
                     LinearDirections)
from .renderer import Portraits, attribute_columns, is_plausible, render

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldConfig:
    steps: int = 120
    fit_steps: int = 600  # pair-fitting steps before the full loss (no images generated)
    pairs: int = 1000  # base faces rendered one degree up and down per attribute
    batch: int = 32
    lr: float = 1e-3
    keep_weight: float = 1.0  # cross-entropy of the other attributes, averaged over them
    identity_weight: float = 4.0
    latent_weight: float = 0.5
    pair_weight: float = 2.0
    seed: int = 0
    progress: bool = True


@dataclass
class Pairs:
    """Codes of faces and of the same faces one degree on: ``w ± step ≈ other``."""

    codes: torch.Tensor  # (N, w_dim)
    other: torch.Tensor  # (N, w_dim)
    sign: torch.Tensor  # (N,) +1 for one degree up, -1 for one degree down


@torch.no_grad()
def render_pairs(encoder: Encoder, data: RenderSet, codes: torch.Tensor, attribute: int, count: int, seed: int,
                 autocast, chunk: int = 200) -> Pairs:
    """Renders ``count`` faces of ``data`` one degree up and one down in ``attribute`` (where the
    world allows it) and encodes them."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)[:count]
    base = data.portraits.index(idx)
    found = []
    for sign in (1, -1):
        values = base.attributes.clone()
        values[:, attribute] = values[:, attribute].round() + sign
        ok = (values[:, attribute] >= 0) & (values[:, attribute] <= 5) & is_plausible(base.identity, values)
        moved = Portraits(base.identity[ok], base.scene[ok], values[ok])
        other = []
        for s in range(0, len(moved), chunk):
            with autocast():
                other.append(encoder(render(moved.index(slice(s, s + chunk)))).float())
        found.append((codes[idx[ok]], torch.cat(other) if other else codes[:0], torch.full((int(ok.sum()),), float(sign))))
    return Pairs(*(torch.cat(parts) for parts in zip(*found)))


def latent_precision(generator: Generator) -> torch.Tensor:
    """Inverse covariance of the training codes (w_dim, w_dim), lightly regularised."""
    return torch.linalg.inv(generator.w_cov + 1e-4 * torch.eye(generator.w_dim, device=generator.w_cov.device))


def mahalanobis(generator: Generator, w: torch.Tensor, precision: torch.Tensor | None = None) -> torch.Tensor:
    """Distance of codes (B, w_dim) from the training codes' mean, in units of their spread (≈1 for real codes)."""
    precision = latent_precision(generator) if precision is None else precision
    centred = w - generator.w_mean
    return torch.einsum("bi,ij,bj->b", centred, precision, centred).clamp(min=0).div(generator.w_dim).sqrt()


def fit_linear(codes: torch.Tensor, values: torch.Tensor, ridge: float = 1e-2) -> LinearDirections:
    """Ridge regression of each attribute's value (N, A) on codes (N, w_dim): the one-degree step is coef/|coef|²."""
    n, d = codes.shape
    x = torch.cat([codes, torch.ones(n, 1)], dim=1)
    coef = torch.linalg.solve(x.T @ x + ridge * n * torch.eye(d + 1), x.T @ values)[:d]  # (w_dim, A)
    linear = LinearDirections(w_dim=d, num_attributes=values.shape[1])
    linear.steps.copy_((coef / coef.pow(2).sum(0, keepdim=True)).T)
    return linear


def fit_degree_offsets(codes: torch.Tensor, degrees: torch.Tensor, num_degrees: int = 6,
                       ridge: float = 1.0) -> DegreeOffsets:
    """Least squares of codes (N, w_dim) on every attribute's degree (N, A) as one-hot columns plus
    a bias, so each degree's offset is measured with the other attributes held (age and glasses go
    together in this world; one attribute's class means would mix them). The small ridge only
    settles the one-hot columns' shared constant, which cancels in every difference the walk uses."""
    n, d = codes.shape
    a = degrees.shape[1]
    x = torch.cat([F.one_hot(degrees, num_degrees).reshape(n, a * num_degrees).float(), torch.ones(n, 1)], dim=1)
    coef = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1]), x.T @ codes)  # (A·D + 1, w_dim)
    offsets = DegreeOffsets(w_dim=d, num_attributes=a, num_degrees=num_degrees)
    offsets.offsets.copy_(coef[:-1].reshape(a, num_degrees, d))
    return offsets


def _pair_loss(field: LatentField, pairs: Pairs, idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    w, sign = pairs.codes[idx], pairs.sign[idx]
    return ((w + field(w, sign) - pairs.other[idx]) ** 2).sum(-1).mean() / scale


def fit_pairs(field: LatentField, pairs: Pairs, cfg: FieldConfig, g: torch.Generator) -> None:
    """Fits the field to the rendered pairs alone: cheap, no image is generated."""
    opt = torch.optim.AdamW(field.parameters(), lr=cfg.lr, weight_decay=0.0)
    scale = ((pairs.other - pairs.codes) ** 2).sum(-1).mean()
    for step in range(cfg.fit_steps):
        loss = _pair_loss(field, pairs, torch.randint(len(pairs.codes), (128,), generator=g), scale)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * (1 - step / cfg.fit_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def train_field(
    attribute: int, codes: torch.Tensor, degrees: torch.Tensor, pairs: Pairs, linear: LinearDirections,
    generator: Generator, predictor: AttributePredictor, identity: IdentityEncoder, cfg: FieldConfig,
    autocast,
) -> LatentField:
    """One attribute's field. ``codes`` (N, w_dim) and ``degrees`` (N, A) are as the predictor reads G(codes)."""
    torch.manual_seed(cfg.seed + attribute)
    g = torch.Generator().manual_seed(cfg.seed + 100 + attribute)
    field = LatentField(w_dim=codes.shape[1])
    field.base.copy_(torch.stack([linear.steps[attribute], -linear.steps[attribute]]))
    if len(pairs.codes):
        fit_pairs(field, pairs, cfg, g)
    pair_scale = ((pairs.other - pairs.codes) ** 2).sum(-1).mean() if len(pairs.codes) else None
    opt = torch.optim.AdamW(field.parameters(), lr=cfg.lr * 0.5, weight_decay=0.0)
    a = attribute
    up_ok = torch.nonzero(degrees[:, a] < predictor.num_degrees - 1).flatten()
    down_ok = torch.nonzero(degrees[:, a] > 0).flatten()
    others = [b for b in range(degrees.shape[1]) if b != a]
    bar = tqdm(range(cfg.steps), desc=f"field {attribute}", disable=not cfg.progress, mininterval=2.0)
    for step in bar:
        half = cfg.batch // 2
        up = up_ok[torch.randint(len(up_ok), (half,), generator=g)]
        down = down_ok[torch.randint(len(down_ok), (half,), generator=g)] if len(down_ok) else up[:0]
        idx = torch.cat([up, down])
        sign = torch.cat([torch.ones(len(up)), -torch.ones(len(down))])
        w = codes[idx]
        target = degrees[idx].clone()
        target[:, a] += sign.long()
        with torch.no_grad(), autocast():
            before = identity(generator(w)).float()
        stepped = w + field(w, sign)
        with autocast():
            image = generator(stepped)
            logits = predictor(image).float()  # (B, A, D)
            after = identity(image).float()
        edit_ce = F.cross_entropy(logits[:, a], target[:, a])
        keep_ce = F.cross_entropy(logits[:, others].reshape(-1, logits.shape[-1]), target[:, others].reshape(-1))
        id_loss = (1 - F.cosine_similarity(after, before, dim=-1)).mean()
        latent_loss = F.relu(mahalanobis(generator, stepped) - mahalanobis(generator, w)).mean()
        loss = edit_ce + cfg.keep_weight * keep_ce + cfg.identity_weight * id_loss + cfg.latent_weight * latent_loss
        if pair_scale is not None:
            loss = loss + cfg.pair_weight * _pair_loss(
                field, pairs, torch.randint(len(pairs.codes), (cfg.batch,), generator=g), pair_scale)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (0.1 + 0.9 * (1 - step / cfg.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(field.parameters(), 1.0)
        opt.step()
        if step % 20 == 0:
            bar.set_postfix(edit=f"{edit_ce.item():.2f}", keep=f"{keep_ce.item():.2f}", id=f"{id_loss.item():.3f}")
    return field.eval().requires_grad_(False)


@torch.no_grad()
def read_codes(generator: Generator, predictor: AttributePredictor, codes: torch.Tensor, autocast, chunk: int = 256):
    """What the steering predictor reads on G(codes): integer degrees (N, A)."""
    out = []
    for s in range(0, len(codes), chunk):
        with autocast():
            out.append(predictor(generator(codes[s : s + chunk])).float().argmax(-1))
    return torch.cat(out)


def train_all_fields(encoder, generator, predictor, identity, data, cfg: FieldConfig, autocast,
                     max_codes: int = 6000) -> tuple[LinearDirections, dict[str, LatentField], DegreeOffsets]:
    """The linear baseline, one field per attribute (by name) and the degree offsets, from the codes
    of a render set. ``predictor``'s heads must be in the render set's column order, the vocabulary's."""
    names = attribute_columns()
    if predictor.num_attributes != len(names):
        raise ValueError(f"the predictor has {predictor.num_attributes} attribute heads; the render set's columns are "
                         f"the {len(names)} of prompts/attributes.yaml ({', '.join(names)})")
    codes = encode_all(encoder, data)
    linear = fit_linear(codes, data.portraits.attributes)
    sub = codes[:max_codes]
    degrees = read_codes(generator, predictor, sub, autocast)
    fields = {}
    for a, name in enumerate(names):
        pairs = render_pairs(encoder, data, codes, a, cfg.pairs, cfg.seed + 300 + a, autocast)
        fields[name] = train_field(a, sub, degrees, pairs, linear, generator, predictor, identity, cfg, autocast)
    return linear, fields, fit_degree_offsets(codes, data.degrees())
