"""Procedural portrait renderer: the ground truth of the built-in world.

A portrait is three small tensors:
- ``identity`` (B, len(IDENTITY)): who the person is (face shape, skin, eyes, nose, hair), in [0, 1];
- ``scene`` (B, len(SCENE)): what is not the person (background, shirt, glasses frame colour), in [0, 1];
- ``attributes`` (B, A): one continuous degree in [0, 5] per attribute, its columns in the order of
  ``prompts/attributes.yaml`` (``attribute_columns``).

``render`` draws a batch of them at 128×128 with anti-aliased shapes, entirely in torch, so
training data is drawn on the fly. ``sample_portraits`` draws people with the correlations a
face space has (beards mostly on men and never on children, grey hair with age, glasses rarer
than not), so the latent space learned from these renders is entangled the way real ones are.
Everything is deterministic for a seed.

The renderer reads each attribute by name; it can only draw the attributes it has code for
(``DRAWN``), and refuses a vocabulary that lists one it cannot draw or lacks one it draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from chatedit.attributes import attribute_names

RESOLUTION = 128
PIXEL = 2.0 / RESOLUTION  # coordinates span [-1, 1] in both axes, y pointing down

IDENTITY = (
    "masc", "face_w", "face_h", "jaw", "skin_tone", "skin_warm", "eye_size", "eye_gap",
    "eye_y", "iris", "brow_thick", "brow_arch", "nose_len", "nose_w", "mouth_w", "lip_tone",
    "hair_dark", "hair_red", "hair_len", "hair_vol", "grey_onset",
)
SCENE = ("bg_hue", "bg_light", "shirt_hue", "shirt_light", "frame_tone")
# The attributes ``render`` has drawing code for and ``sample_attributes`` draws values for; their
# order, the columns of ``Portraits.attributes``, is the vocabulary's (``attribute_columns``).
DRAWN = frozenset({"bangs", "eyeglasses", "beard", "smiling", "age"})


def attribute_columns() -> tuple[str, ...]:
    """The columns of ``Portraits.attributes``: the attributes of ``prompts/attributes.yaml`` in its
    order. Raises, naming both lists, when the yaml lists one this renderer cannot draw or lacks
    one it draws."""
    names = attribute_names()
    undrawn, unlisted = [n for n in names if n not in DRAWN], sorted(DRAWN - set(names))
    if undrawn or unlisted:
        problems = ([f"it has no drawing for {', '.join(undrawn)}"] if undrawn else []) + (
            [f"the yaml lacks {', '.join(unlisted)}"] if unlisted else [])
        raise ValueError(
            f"prompts/attributes.yaml lists ({', '.join(names)}) but the built-in renderer draws "
            f"({', '.join(sorted(DRAWN))}): {'; '.join(problems)} (docs/attributes.md says what a new attribute needs)")
    return names


def _column(name: str) -> int:
    """Where attribute ``name`` sits in ``Portraits.attributes``."""
    return attribute_columns().index(name)


@dataclass
class Portraits:
    identity: torch.Tensor  # (B, len(IDENTITY)) in [0, 1]
    scene: torch.Tensor  # (B, len(SCENE)) in [0, 1]
    attributes: torch.Tensor  # (B, A) degrees in [0, 5], columns in ``attribute_columns()`` order

    def __len__(self) -> int:
        return self.identity.shape[0]

    def degrees(self) -> torch.Tensor:
        """Integer degree labels (B, A): the nearest degree to each continuous value."""
        return self.attributes.round().clamp(0, 5).long()

    def with_attributes(self, attributes: torch.Tensor) -> "Portraits":
        return Portraits(self.identity, self.scene, attributes)

    def index(self, idx) -> "Portraits":
        return Portraits(self.identity[idx], self.scene[idx], self.attributes[idx])


# --------------------------------------------------------------------------- sampling


def jitter_degrees(degrees: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Continuous values for integer degrees: mostly near the degree, sometimes anywhere in its bin."""
    near = (torch.rand(degrees.shape, generator=generator) - 0.5) * 0.6
    anywhere = torch.rand(degrees.shape, generator=generator) - 0.5
    use_near = torch.rand(degrees.shape, generator=generator) < 0.85
    values = degrees.float() + torch.where(use_near, near, anywhere)
    return values.clamp(0.0, 5.0)


def sample_identities(n: int, g: torch.Generator) -> torch.Tensor:
    """Identity parameters (n, len(IDENTITY)) in [0, 1]: about half men, hair longer on women."""
    identity = torch.rand(n, len(IDENTITY), generator=g)
    col = {name: i for i, name in enumerate(IDENTITY)}
    male = torch.rand(n, generator=g) < 0.5
    identity[:, col["masc"]] = torch.where(male, 0.75 + 0.25 * identity[:, col["masc"]], 0.25 * identity[:, col["masc"]])
    hair_len = identity[:, col["hair_len"]]
    identity[:, col["hair_len"]] = torch.where(male, 0.45 * hair_len, 0.3 + 0.7 * hair_len)
    return identity


def sample_scenes(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, len(SCENE), generator=g)


def sample_attributes(identity: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Attribute values (n, A) for these people, with the correlations of a real face space, in
    ``attribute_columns()`` order (drawn in a fixed order, so a seed gives the same people whatever
    the columns' order; only the jitter, drawn per column, follows it)."""
    n = identity.shape[0]
    male = identity[:, IDENTITY.index("masc")] > 0.5
    u = lambda: torch.rand(n, generator=g)  # noqa: E731
    age = torch.randint(0, 6, (n,), generator=g)
    # Beards: mostly on men, never on children, at most stubble on teenagers.
    has_beard = male & (u() < 0.6) & (age >= 1)
    beard = torch.where(has_beard, torch.randint(1, 6, (n,), generator=g), 0)
    beard = torch.where(age == 1, beard.clamp(max=1), beard)
    # Glasses: rarer than not, a little more common with age.
    no_glasses = u() < (0.62 - 0.05 * age.float())
    glasses = torch.where(no_glasses, 0, torch.randint(1, 6, (n,), generator=g))
    # Bangs: more common on women.
    no_bangs = u() < torch.where(male, 0.5, 0.3)
    bangs = torch.where(no_bangs, 0, torch.randint(1, 6, (n,), generator=g))
    smiling = torch.randint(0, 6, (n,), generator=g)
    drawn = {"bangs": bangs, "eyeglasses": glasses, "beard": beard, "smiling": smiling, "age": age}
    degrees = torch.stack([drawn[name] for name in attribute_columns()], dim=1)
    return jitter_degrees(degrees, g)


def is_plausible(identity: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """(B,) whether the world has such a face: beards only on men, stubble from the teens, beards from adulthood."""
    beard = attributes[:, _column("beard")].round()
    age = attributes[:, _column("age")].round()
    male = identity[:, IDENTITY.index("masc")] > 0.5
    return (beard == 0) | (male & (age >= 1) & ((beard <= 1) | (age >= 2)))


def sample_portraits(n: int, seed: int) -> Portraits:
    """Draws ``n`` new people in new scenes, deterministically for ``seed``."""
    g = torch.Generator().manual_seed(seed)
    identity = sample_identities(n, g)
    scene = sample_scenes(n, g)
    return Portraits(identity, scene, sample_attributes(identity, g))


def sample_variants(portraits: Portraits, seed: int, new_scene: float = 0.5) -> Portraits:
    """The same people with freshly drawn attributes, and with probability ``new_scene`` a new scene."""
    g = torch.Generator().manual_seed(seed)
    n = len(portraits)
    change = (torch.rand(n, 1, generator=g) < new_scene).float()
    scene = portraits.scene * (1 - change) + sample_scenes(n, g) * change
    return Portraits(portraits.identity, scene, sample_attributes(portraits.identity, g))


# --------------------------------------------------------------------------- drawing helpers


def _stair(v: torch.Tensor) -> torch.Tensor:
    """Maps a continuous degree to its look: flat around each degree, changing between them."""
    base = v.floor()
    frac = v - base
    t = ((frac - 0.25) / 0.5).clamp(0, 1)
    return base + t * t * (3 - 2 * t)


def _fill(sdf: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage of the region where ``sdf`` < 0 (one pixel of ramp)."""
    return (0.5 - sdf / PIXEL).clamp(0, 1)


def _ellipse(x, y, cx, cy, rx, ry):
    r = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + 1e-9)
    return (r - 1) * torch.minimum(rx, ry)


def _superellipse(x, y, cx, cy, rx, ry, p=4.0):
    r = ((((x - cx) / rx).abs() ** p) + (((y - cy) / ry).abs() ** p)) ** (1 / p)
    return (r - 1) * torch.minimum(rx, ry)


def _mix(img, colour, alpha):
    """Paints ``colour`` (B, 3, 1, 1) or (B, 3, H, W) over ``img`` with coverage ``alpha`` (B, 1, H, W)."""
    return torch.lerp(img, colour.expand_as(img), alpha)


def _lerp(a, b, t):
    return a + (b - a) * t


def _rgb(*c):
    return torch.tensor(c).view(1, 3, 1, 1)


def _hue_colour(hue, sat, light):
    """A colour from hue/saturation/lightness-like values, each (B, 1, 1, 1)."""
    k = torch.arange(3).view(1, 3, 1, 1) * (2 * math.pi / 3)
    wave = torch.cos(2 * math.pi * hue - k)
    return (light + sat * wave * 0.5).clamp(0, 1)


def _smooth(lo, hi, v):
    t = ((v - lo) / (hi - lo)).clamp(0, 1)
    return t * t * (3 - 2 * t)


_GRID_CACHE: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _grid(device):
    if device not in _GRID_CACHE:
        coords = (torch.arange(RESOLUTION, device=device, dtype=torch.float32) + 0.5) * PIXEL - 1
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        # a fixed per-pixel hash, used as texture for stubble and hair
        noise = torch.frac(torch.sin(x * 12.9898 * 64 + y * 78.233 * 64) * 43758.5453)
        _GRID_CACHE[device] = (x.view(1, 1, RESOLUTION, RESOLUTION), y.view(1, 1, RESOLUTION, RESOLUTION),
                               noise.view(1, 1, RESOLUTION, RESOLUTION))
    return _GRID_CACHE[device]


# --------------------------------------------------------------------------- the renderer


def _layout(p: dict[str, torch.Tensor], age: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where the parts of a face sit, in image coordinates ([-1, 1], y down), from its identity and
    its (stair-mapped) age: children have round faces, big eyes and small noses."""
    young = (1 - age / 2).clamp(0, 1)  # 1 for a child, 0 from young adult on
    old = ((age - 2) / 3).clamp(0, 1)  # 0 up to young adult, 1 for elderly
    face_h = (0.62 + 0.1 * p["face_h"]) * (1 - 0.12 * young)
    face_cy = 0.06 + 0.04 * young
    eye_y = face_cy - 0.05 + 0.05 * p["eye_y"] + 0.07 * young
    eye_r = (0.052 + 0.018 * p["eye_size"]) * (1 + 0.3 * young)
    nose_y = eye_y + (0.17 + 0.06 * p["nose_len"]) * (1 - 0.2 * young)
    return {
        "young": young, "old": old, "face_h": face_h, "face_cy": face_cy, "chin_y": face_cy + face_h,
        "face_w": 0.47 + 0.09 * p["face_w"] + 0.04 * p["masc"] + 0.02 * old,
        "eye_y": eye_y, "eye_dx": 0.17 + 0.05 * p["eye_gap"], "eye_r": eye_r,
        "brow_y": eye_y - 0.1 - 0.03 * p["brow_arch"] - 0.4 * eye_r * young,
        "nose_y": nose_y, "mouth_y": nose_y + 0.11 + 0.02 * p["nose_len"],
    }


def landmarks(portraits: Portraits) -> dict[str, torch.Tensor]:
    """Eye and mouth positions (B,) of each portrait, exactly where ``render`` draws them."""
    p = {name: portraits.identity[:, i] for i, name in enumerate(IDENTITY)}
    age = _stair(portraits.attributes[:, _column("age")].clamp(0, 5))
    geo = _layout(p, age)
    return {k: geo[k] for k in ("eye_y", "eye_dx", "mouth_y")}


@torch.no_grad()
def render(portraits: Portraits) -> torch.Tensor:
    """Draws portraits as images (B, 3, 128, 128) in [0, 1]; each attribute is read by name below (``a[name]``)."""
    columns = attribute_columns()
    if portraits.attributes.ndim != 2 or portraits.attributes.shape[1] != len(columns):
        raise ValueError(f"attributes must be (B, {len(columns)}), one column per attribute of prompts/attributes.yaml "
                         f"({', '.join(columns)}), got {tuple(portraits.attributes.shape)}")
    device = portraits.identity.device
    x, y, noise = _grid(device)
    B = len(portraits)
    p = {name: portraits.identity[:, i].view(B, 1, 1, 1) for i, name in enumerate(IDENTITY)}
    s = {name: portraits.scene[:, i].view(B, 1, 1, 1) for i, name in enumerate(SCENE)}
    a = {name: _stair(portraits.attributes[:, i].clamp(0, 5)).view(B, 1, 1, 1) for i, name in enumerate(columns)}
    rgb = lambda *c: _rgb(*c).to(device)  # noqa: E731

    # 1. geometry, with age changing proportions
    age = a["age"]
    geo = _layout(p, age)
    young, old, masc = geo["young"], geo["old"], p["masc"]
    face_w, face_h, face_cy, chin_y = geo["face_w"], geo["face_h"], geo["face_cy"], geo["chin_y"]
    eye_y, eye_dx, eye_r, brow_y = geo["eye_y"], geo["eye_dx"], geo["eye_r"], geo["brow_y"]
    nose_y, mouth_y = geo["nose_y"], geo["mouth_y"]
    squint = 1 - 0.25 * _smooth(2.4, 3.0, a["smiling"]) - 0.3 * _smooth(4.0, 5.0, a["smiling"])
    hairline = face_cy - face_h + 0.18 - 0.02 * young + 0.06 * masc * _smooth(4.0, 5.0, age)

    # 2. colours
    skin = _lerp(rgb(0.97, 0.82, 0.7), rgb(0.42, 0.28, 0.2), p["skin_tone"])
    skin = skin + (p["skin_warm"] - 0.5) * rgb(0.05, 0.0, -0.05)
    skin = _lerp(skin, skin.mean(1, keepdim=True), 0.25 * old)
    shade = skin * 0.8
    base_hair = _lerp(rgb(0.88, 0.74, 0.48), rgb(0.1, 0.08, 0.07), p["hair_dark"])
    base_hair = _lerp(base_hair, rgb(0.62, 0.27, 0.1), 0.6 * p["hair_red"] * (1 - p["hair_dark"]))
    greyness = 0.25 * _smooth(2.5, 3.3, age) + 0.75 * _smooth(3.6 + 0.4 * p["grey_onset"], 4.6 + 0.3 * p["grey_onset"], age)
    hair = _lerp(base_hair, rgb(0.86, 0.86, 0.84), greyness)
    hair_dark = hair * 0.72
    iris = _lerp(rgb(0.35, 0.22, 0.12), rgb(0.3, 0.5, 0.7), p["iris"])
    iris = _lerp(iris, rgb(0.35, 0.55, 0.35), (p["iris"] - 0.5).clamp(0, 0.5))
    lip = _lerp(rgb(0.78, 0.42, 0.42), rgb(0.55, 0.25, 0.25), p["lip_tone"])
    bg_top = _hue_colour(s["bg_hue"], 0.35, 0.45 + 0.35 * s["bg_light"])
    bg_bottom = bg_top * 0.8
    shirt = _hue_colour(s["shirt_hue"], 0.6, 0.2 + 0.5 * s["shirt_light"])
    frame_colour = _lerp(rgb(0.05, 0.05, 0.06), rgb(0.45, 0.25, 0.12), s["frame_tone"])

    # 3. background, hair behind the head, shoulders, neck
    img = _lerp(bg_top, bg_bottom, (y + 1) / 2).expand(B, 3, RESOLUTION, RESOLUTION)
    vol = 0.05 + 0.05 * p["hair_vol"]
    hair_len = p["hair_len"]
    back_bottom = chin_y - 0.1 + 0.75 * hair_len
    back = torch.maximum(
        _superellipse(x, y, 0 * x, (face_cy - 0.1 + back_bottom) / 2, face_w + vol + 0.02, (back_bottom - face_cy + 0.1) / 2 + 0.2, p=3.0),
        (face_cy - 0.2) - y - 0.0 * x,
    )
    img = _mix(img, hair_dark, _fill(back) * _smooth(0.25, 0.35, hair_len))
    img = _mix(img, shirt, _fill(_ellipse(x, y, 0 * x, 1.28 + 0 * x, 0.8 + 0.1 * masc, 0.5 + 0 * x)))
    neck = torch.maximum((x.abs() - (0.16 + 0.04 * masc)), (chin_y - 0.15) - y)
    neck = torch.maximum(neck, y - (1.0 - 0.22 + 0 * x))
    img = _mix(img, shade, _fill(neck))

    # 4. ears and face, with a soft shading towards the edge
    for side in (-1, 1):
        img = _mix(img, shade, _fill(_ellipse(x, y, side * (face_w - 0.01), eye_y + 0.07, 0.055 + 0 * x, 0.1 + 0 * x)))
    jaw = 1.6 + 1.4 * p["jaw"] + 0.8 * masc
    face_sdf = torch.where(
        y < face_cy,
        _ellipse(x, y, 0 * x, face_cy, face_w, face_h),
        _superellipse(x, y, 0 * x, face_cy, face_w, face_h, p=jaw),
    )
    face_alpha = _fill(face_sdf)
    r2 = (x / face_w) ** 2 + ((y - face_cy) / face_h) ** 2
    face_colour = skin * (1 - 0.14 * r2.clamp(0, 1) ** 3)
    img = _mix(img, face_colour, face_alpha)
    for side in (-1, 1):  # children's rosy cheeks
        blush = _fill(_ellipse(x, y, side * (eye_dx + 0.03), eye_y + 0.14, 0.07 + 0 * x, 0.045 + 0 * x))
        img = _mix(img, rgb(0.95, 0.55, 0.55), blush * 0.35 * young)

    # 5. age lines: forehead, nasolabial folds, crow's feet, eye bags
    lines = torch.zeros_like(face_alpha)
    forehead = _smooth(2.5, 3.3, age) * 0.75 + _smooth(3.5, 4.5, age) * 0.25
    for k in range(3):
        ly = hairline + 0.05 + 0.035 * k + 0.01 * torch.cos(x * 6)
        line = _fill((y - ly).abs() - 0.004 - 0.003 * old) * _fill(x.abs() - face_w * 0.55)
        lines = torch.maximum(lines, line * forehead * (1.0 if k < 2 else _smooth(4.2, 5.0, age)))
    folds = _smooth(2.5, 3.3, age) * 0.8 + _smooth(3.5, 5.0, age) * 0.2
    for side in (-1, 1):
        t = ((y - nose_y) / (mouth_y + 0.06 - nose_y)).clamp(0, 1)
        fx = side * (0.08 + 0.03 * p["nose_w"] + 0.1 * t)
        fold = _fill((x - fx).abs() - 0.005) * _fill(nose_y - 0.01 - y) * _fill(y - (mouth_y + 0.06))
        lines = torch.maximum(lines, fold * folds)
        for k in (-1, 0, 1):
            cx = side * (eye_dx + 0.1)
            crow = _fill(((y - eye_y - k * 0.025) - 0.25 * k * (x - cx) * side).abs() - 0.004)
            crow = crow * _fill((x - cx).abs() - 0.035)
            lines = torch.maximum(lines, crow * _smooth(3.5, 4.5, age))
        bag = _fill(((y - (eye_y + eye_r * 1.2)) + 1.5 * (x - side * eye_dx) ** 2).abs() - 0.004)
        bag = bag * _fill((x - side * eye_dx).abs() - eye_r * 1.1)
        lines = torch.maximum(lines, bag * _smooth(4.0, 4.8, age))
    img = _mix(img, shade * 0.7, lines * 0.9 * face_alpha)

    # 6. beard: stubble, then a short beard along the jaw (no moustache), a full one (moustache, up the
    #    cheeks, standing off the face), then length below the chin; a shade darker than the hair
    beard = a["beard"]
    density = _smooth(0.3, 1.0, beard) * 0.45 + _smooth(1.2, 2.0, beard) * 0.55
    full = _smooth(2.3, 3.0, beard)
    grow = 0.045 * full
    length = 0.11 * _smooth(3.2, 4.0, beard) + 0.13 * _smooth(4.2, 5.0, beard)
    side = (x / face_w).abs().clamp(max=1)
    beard_top = mouth_y + 0.035 - (mouth_y - eye_y + 0.03) * side**4 * (0.55 + 0.4 * full)
    region = torch.maximum(face_sdf - grow, beard_top - y)
    chin_part = _superellipse(x, y, 0 * x, chin_y - 0.04 + length / 2, face_w * (0.85 - 0.25 * length / 0.24), 0.07 + length / 2, p=2.5)
    region = torch.minimum(region, torch.maximum(chin_part, (mouth_y + 0.04) - y))
    region = _fill(region)
    mustache = _fill(_ellipse(x, y, 0 * x, mouth_y - 0.03, 0.09 + 0.03 * p["mouth_w"], 0.022 + 0.006 * _smooth(3.3, 4.0, beard)))
    region = torch.maximum(region, mustache * full)
    texture = 1 - 0.6 * (1 - _smooth(1.3, 2.0, beard)) * (noise > 0.5).float()
    img = _mix(img, hair_dark * 0.85, region * density * texture)

    # 7. mouth: serious (narrow, corners turned down) → wider, corners flicked up → a round U with smile
    #    lines → a wide, deep U with raised cheeks and narrowing eyes → teeth → wide open laugh. Each
    #    degree adds its own cue, a few pixels wide at 128 px so that a predictor (and an autoencoder)
    #    can tell neighbouring degrees apart.
    smile = a["smiling"]
    c1, c2, c3 = _smooth(0.4, 1.0, smile), _smooth(1.4, 2.0, smile), _smooth(2.4, 3.0, smile)
    mw = (0.11 + 0.04 * p["mouth_w"]) * (1 + 0.16 * c1 + 0.14 * c2 + 0.14 * c3 + 0.04 * (smile - 3).clamp(min=0))
    frown = 0.024 * (1 - c1)
    curl = 0.05 * c1
    lift = 0.05 * c2 + 0.035 * c3 + 0.006 * (smile - 3).clamp(min=0)
    for side in (-1, 1):  # cheeks raised by a broad smile: a light round patch under each eye
        apple = _fill(_ellipse(x, y, side * (eye_dx + 0.01), eye_y + 0.15, 0.085 + 0 * x, 0.05 + 0 * x))
        img = _mix(img, (skin * 1.22).clamp(max=1), apple * 0.75 * c3)
    u = (x / mw).clamp(-1.2, 1.2)
    curve = mouth_y + frown * u**2 - curl * u**8 - lift * (u**2 - 0.35)
    opening = 0.03 * _smooth(3.3, 4.0, smile) + 0.055 * _smooth(4.3, 5.0, smile)
    in_mouth = _fill(x.abs() - mw)
    lower = curve + opening * (1 - u**2).clamp(min=0)
    lip_line = _fill((y - curve).abs() - 0.011) * _fill(x.abs() - mw - 0.005)
    img = _mix(img, lip * 0.45, lip_line)
    cavity = _fill(torch.maximum(curve - y, y - lower)) * in_mouth
    img = _mix(img, rgb(0.3, 0.08, 0.1), cavity)
    teeth = _fill(torch.maximum(curve - y, y - (curve + torch.minimum(opening, 0.025 + 0 * opening)))) * in_mouth
    img = _mix(img, rgb(0.96, 0.95, 0.9), teeth * _smooth(3.3, 3.8, smile))
    lower_lip = _fill(((y - lower - 0.018)).abs() - 0.013) * _fill(x.abs() - mw * 0.85)
    img = _mix(img, lip, lower_lip)
    for side in (-1, 1):  # smile lines bracketing the mouth corners: faint at a gentle smile, long at a broad one
        cx, cy = side * (mw + 0.035), mouth_y - lift * 0.6 - 0.01 * c1
        bracket = _fill(_ellipse(x, y, cx, cy, 0.016 + 0 * x, 0.035 + 0.025 * c3).abs() - 0.006) * (x * side > cx * side)
        img = _mix(img, shade * 0.7, bracket * (0.75 * c2 + 0.25 * c3))

    # 8. nose
    for side in (-1, 1):
        nostril = _ellipse(x, y, side * (0.03 + 0.015 * p["nose_w"]), nose_y, 0.018 + 0 * x, 0.011 + 0 * x)
        img = _mix(img, shade * 0.7, _fill(nostril))
    ridge = _fill((x - 0.025).abs() - 0.005) * _fill(eye_y + 0.04 - y) * _fill(y - nose_y + 0.02)
    img = _mix(img, shade, ridge * 0.5)

    # 9. eyes and brows
    for side in (-1, 1):
        ex = side * eye_dx
        eye_h = eye_r * 0.6 * squint
        white = _fill(_ellipse(x, y, ex, eye_y, eye_r, eye_h))
        img = _mix(img, rgb(0.97, 0.97, 0.97), white)
        iris_a = _fill(_ellipse(x, y, ex, eye_y, eye_r * 0.5, eye_r * 0.5)) * white
        img = _mix(img, iris, iris_a)
        img = _mix(img, rgb(0.05, 0.05, 0.05), _fill(_ellipse(x, y, ex, eye_y, eye_r * 0.22, eye_r * 0.22)) * white)
        lid = _fill(_ellipse(x, y, ex, eye_y, eye_r, eye_h).abs() - 0.006) * _fill(y - eye_y)
        img = _mix(img, hair_dark * 0.6, lid)
        bu = ((x - ex) / 0.09).clamp(-1.3, 1.3)
        bcurve = brow_y + 0.012 * (1 - c1) - (0.02 + 0.02 * p["brow_arch"]) * (1 - bu**2) * (1 - 0.4 * (1 - c1))
        brow = _fill((y - bcurve).abs() - (0.008 + 0.014 * p["brow_thick"] + 0.004 * masc) * (1 - 0.5 * young)) * _fill((x - ex).abs() - 0.1)
        img = _mix(img, hair_dark, brow)

    # 10. hair on top, then bangs growing from the hairline down over the brows
    top = _ellipse(x, y, 0 * x, face_cy - 0.02, face_w + vol, face_h + vol)
    hair_cap = torch.maximum(top, torch.minimum(y - hairline - 0.04 * (x / face_w) ** 2, -face_sdf))
    hair_cap = torch.maximum(hair_cap, y - (eye_y + 0.02 + 0.6 * hair_len * 0.4))
    strands = 0.9 + 0.1 * torch.sin(x * 90 + 3 * torch.sin(y * 10))
    img = _mix(img, hair * strands, _fill(hair_cap))
    bangs = a["bangs"]
    reach = (brow_y + 0.045) - hairline
    fringe_y = hairline + reach * (0.08 + 0.92 * bangs / 5) + 0.012 * torch.sin(x * 55)
    fringe = torch.maximum(y - fringe_y, face_sdf + 0.01)
    fringe = torch.maximum(fringe, hairline - 0.06 - y)
    has_fringe = _smooth(0.15, 0.5, bangs)
    # the fringe's shadow on the forehead: where it ends shows even when hair and skin are alike
    shadow = _fill((y - fringe_y - 0.02).abs() - 0.016) * _fill(face_sdf + 0.01) * _fill(-(y - hairline))
    img = _mix(img, shade * 0.75, shadow * 0.55 * has_fringe)
    img = _mix(img, hair * strands, _fill(fringe) * has_fringe)
    edge = _fill((y - fringe_y).abs() - 0.009) * _fill(face_sdf + 0.01)
    img = _mix(img, hair_dark, edge * has_fringe * _fill(-(y - hairline)))

    # 11. glasses: rimless → thin → thick frames → thin → thick sunglasses
    g = a["eyeglasses"]
    present = _smooth(0.3, 0.8, g)
    frame = 0.012 * _smooth(1.25, 1.75, g) + 0.014 * _smooth(2.25, 2.75, g) - 0.014 * _smooth(3.25, 3.75, g) + 0.014 * _smooth(4.25, 4.75, g)
    dark = _smooth(3.25, 3.75, g)
    rimless = present * (1 - _smooth(1.25, 1.75, g))
    lens_rx, lens_ry = eye_r + 0.06, eye_r * 0.55 + 0.06
    for side in (-1, 1):
        lens = _superellipse(x, y, side * eye_dx, eye_y + 0.005, lens_rx, lens_ry)
        inside = _fill(lens)
        img = _mix(img, rgb(0.72, 0.84, 0.92), inside * 0.18 * present * (1 - dark))
        glint = _fill((((x - side * eye_dx) + (y - eye_y)) + 0.03).abs() - 0.007) * inside
        img = _mix(img, rgb(1.0, 1.0, 1.0), glint * 0.55 * present * (1 - dark))
        img = _mix(img, rgb(0.06, 0.06, 0.08), inside * 0.93 * dark)
        rim = _fill(lens.abs() - 0.0035)
        img = _mix(img, rgb(0.7, 0.72, 0.75), rim * rimless * 0.8)
        ring = _fill(lens.abs() - frame / 2 - 0.0025) * (frame > 0.003)
        img = _mix(img, frame_colour, ring * present * _smooth(1.0, 1.5, g))
        arm_y = eye_y - lens_ry * 0.5
        arm = _fill((y - arm_y).abs() - 0.004 - frame * 0.3) * _fill((x - side * (eye_dx + lens_rx + (face_w - eye_dx - lens_rx) / 2)).abs() - (face_w - eye_dx - lens_rx) / 2)
        arm_colour = _lerp(rgb(0.7, 0.72, 0.75), frame_colour, _smooth(1.25, 1.75, g))
        img = _mix(img, arm_colour, arm * present)
    bridge = _fill((y - (eye_y - 0.01 + 3 * x**2)).abs() - 0.004 - frame * 0.3) * _fill(x.abs() - (eye_dx - lens_rx + 0.01))
    img = _mix(img, _lerp(rgb(0.7, 0.72, 0.75), frame_colour, _smooth(1.25, 1.75, g)), bridge * present)

    return img.clamp(0, 1)
