"""Talk-to-Edit's published non-generator models (Jiang et al., ICCV 2021) as our own modules.

Talk-to-Edit (github.com/yumingj/Talk-to-Edit) publishes, besides its StyleGAN2 generators, three
kinds of weights. Our modules below reproduce their parameter names and shapes exactly, so the
published files load with ``strict`` key and shape checks; the constructors' defaults are the
published configurations.

``FieldNetwork`` (``models/archs/field_function_arch.py``, ``configs/train/field_*.yml``), one file
per attribute: ``{128,1024}_field/{Bangs,Eyeglasses,No_Beard,Smiling,Young}.pth``, a bare
``state_dict()`` (``BaseModel.save_network``). An MLP 512 → 512 of ``num_layer: 8`` linear layers,
hidden width 512, LeakyReLU(0.2) after every layer but the last; keys ``field.{0..7}.Linear.weight``
(512, 512) and ``.bias`` (512,). Its input is a W code (B, 512). Its output is not itself the W
step: ``FieldFunctionModel.modify_latent_code`` pushes it through the generator's mapping MLP
without the leading PixelNorm and subtracts the same map of zeros, then adds that delta to the
first ``replaced_layers`` W+ rows (10 of 18 at 1024 px, 8 of 12 at 128 px) and to the W code fed
to the next step. ``field_step`` does exactly that.

``AttributePredictor`` (``models/archs/attribute_predictor_arch.py``, ``configs/attributes_5.json``):
``predictor_{128,1024}.pth.tar`` (and ``eval_predictor.pth.tar``), a dict whose ``"state_dict"``
is loaded strictly into the bare model (so no ``module.`` prefix is expected, though we strip one).
A torchvision-named ResNet-50 backbone (``conv1``, ``bn1``, ``layer1..4`` of Bottlenecks with the
stride on the 3×3 conv and ``downsample.{0,1}``; no ``fc``), then ``stem`` = fc 2048 → 512 + BN1d
+ ReLU (keys ``stem.fc``, ``stem.bn``), then one head per attribute named
``classifier{CelebA index:02d}{name}``: ``classifier06Bangs``, ``classifier16Eyeglasses``,
``classifier25No_Beard``, ``classifier32Smiling``, ``classifier40Young``, each
``Sequential(fc_block(512 → 256), Linear(256 → 6))`` (keys ``.0.fc``, ``.0.bn``, ``.1``). Dropout rate
is 0, so there are no dropout modules. Input (``models/utils.transform_image``): the generator's
[-1, 1] output taken to [0, 1] with half an 8-bit level added before the clamp,
``clamp((x + 1) / 2 + 0.5 / 255, 0, 1)``, then area-resized to 128×128 (their 1024 px model only)
and ImageNet mean/std normalised (``predictor_input``). Their evaluation script instead reads the
saved 8-bit PNGs (rounded, no half level added; ``eval_predictor_input``). Their forward returns a
list of five (B, 6) logits in the head order above; ours returns them stacked, (B, 5, 6), in the
same order.

``ArcFaceResNet18`` (``models/losses/arcface_loss.py``, trained by ronghuaiyang/arcface-pytorch):
``arcface_resnet18_110.pth``, a bare ``state_dict()`` of ``DataParallel(resnet_face18(use_se=False))``,
so every key starts with ``module.``. Grey input (B, 1, 128, 128) in [-1, 1] (Talk-to-Edit takes
the channel mean of the generator's [-1, 1] output after an area resize to 128); ``conv1`` 3×3 1→64,
``bn1``, one-parameter ``prelu``, 2×2 max-pool, four stages of two IRBlocks (``bn0``, ``conv1``
c→c, ``bn1``, ``prelu``, ``conv2`` c→planes with the stride, ``bn2``, ``downsample.{0,1}``; widths
64/128/256/512), ``bn4``, ``fc5`` 512·8·8 → 512, ``bn5`` (BN1d). Output: a raw 512-d embedding
(they compare embeddings with an L1 loss; cosine similarity is the usual identity measure).

Degrees. CelebA-Dialog keeps CelebA's attribute names, but its fine-grained degrees all run from
"none" to "most" of the visible attribute: ``No_Beard`` 0 is "doesn't have any beard", 5 "very long
/ full beard"; ``Young`` 0 is "a young kid", 5 "in his eighties"
(``language/templates/attr_wise_caption_templates.json``); a "positive" change is "add beard" /
"make the face older" (``language/templates/user_fsm.json``); and the fields are trained to raise
the predicted class by one (``BaseModel.feed_data``). So their degree *is* our degree for all five:
beard = No_Beard class, age = Young class, no ``5 - d``. (``attributes_5.json`` carries
``idx_scale: -1, idx_bias: 5`` for No_Beard and Young, but nothing in the repository reads them;
they look like the relation to CelebA's binary labels, where No_Beard = 1 means degree 0.)
"""

from __future__ import annotations

import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import CheckpointError, check_state, safe_load

from chatedit.attributes import MAX_DEGREE, attribute_names

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 128  # both the predictor and ArcFace see 128×128 faces
W_PLUS_LAYERS = {128: 12, 1024: 18}  # rows of W+ for Talk-to-Edit's two generators
REPLACED_LAYERS = {128: 8, 1024: 10}  # rows a field step edits (configs/editing/*.yml)
WRAPPER_KEYS = ("state_dict", "params_ema", "params")  # where training scripts nest the weights


@dataclass(frozen=True)
class TalkToEditAttribute:
    ours: str  # our attribute name
    theirs: str  # their attribute name: config key, field file stem
    head: str  # predictor head module name
    inverted: bool  # True if their degree d is our degree MAX_DEGREE - d

    @property
    def field_file(self) -> str:
        return f"{self.theirs}.pth"

    def to_ours(self, degree):
        return MAX_DEGREE - degree if self.inverted else degree


# in their predictor's head order (attr_info order of configs/attributes_5.json)
ATTRIBUTES = (
    TalkToEditAttribute("bangs", "Bangs", "classifier06Bangs", inverted=False),
    TalkToEditAttribute("eyeglasses", "Eyeglasses", "classifier16Eyeglasses", inverted=False),
    TalkToEditAttribute("beard", "No_Beard", "classifier25No_Beard", inverted=False),
    TalkToEditAttribute("smiling", "Smiling", "classifier32Smiling", inverted=False),
    TalkToEditAttribute("age", "Young", "classifier40Young", inverted=False),
)
BY_NAME = {a.ours: a for a in ATTRIBUTES}


def attribute(name: str) -> TalkToEditAttribute:
    """Talk-to-Edit's counterpart of our attribute ``name``."""
    if name not in BY_NAME:
        raise ValueError(f"Talk-to-Edit has no model for attribute {name!r}; it covers {', '.join(BY_NAME)}")
    return BY_NAME[name]


def our_logits(logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Predictor logits (B, 5, 6) in their head order (or their list of five (B, 6)) → (B, A, 6) in
    our attribute order, the degree axis flipped for any inverted attribute."""
    if not isinstance(logits, torch.Tensor):
        logits = torch.stack(list(logits), dim=1)
    if logits.ndim != 3 or logits.shape[1] != len(ATTRIBUTES) or logits.shape[2] != MAX_DEGREE + 1:
        raise ValueError(f"logits must be (B, {len(ATTRIBUTES)}, {MAX_DEGREE + 1}), got {tuple(logits.shape)}")
    columns = []
    for name in attribute_names():
        spec = attribute(name)
        column = logits[:, ATTRIBUTES.index(spec)]  # (B, 6)
        columns.append(column.flip(-1) if spec.inverted else column)
    return torch.stack(columns, dim=1)


def read_degrees(logits: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, A) integer degrees in our order and scale from the predictor's logits."""
    return our_logits(logits).argmax(-1)


# ------------------------------------------------------------------------------ preprocessing


def predictor_input(image: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] → the predictor's input as Talk-to-Edit's ``transform_image`` makes
    it: half an 8-bit level added, clamped to [0, 1], area-resized to 128×128, ImageNet-normalised.

    Theirs starts from the generator's unclamped [-1, 1] output, ``clamp((x + 1) / 2 + 0.5 / 255, 0,
    1)``; from an image already clamped to [0, 1] (as ``generate`` returns) the only difference is
    at pixels drawn below black, which read 0.5 / 255 here and 0 there.
    """
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
    return _normalise((image + 0.5 / 255).clamp(0, 1))


def eval_predictor_input(image: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] → the evaluation predictor's input as Talk-to-Edit's evaluation
    script makes it from the PNG it saved: rounded to 8 bits (``postprocess``), then area-resized
    to 128×128 and ImageNet-normalised."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
    return _normalise((image * 255 + 0.5).clamp(0, 255).floor() / 255)


def _normalise(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] → area-resized to 128×128 when it is not, ImageNet-normalised."""
    if image.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        image = F.interpolate(image, (INPUT_SIZE, INPUT_SIZE), mode="area")
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def arcface_input(image: torch.Tensor) -> torch.Tensor:
    """RGB (B, 3, H, W) in [0, 1] → ArcFace's input (B, 1, 128, 128): channel mean, in [-1, 1]."""
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
    if image.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        image = F.interpolate(image, (INPUT_SIZE, INPUT_SIZE), mode="area")
    return (image * 2 - 1).mean(dim=1, keepdim=True)


# ------------------------------------------------------------------------------ field


class _FieldLayer(nn.Module):
    def __init__(self, cin: int, cout: int, negative_slope: float | None):
        super().__init__()
        self.Linear = nn.Linear(cin, cout)  # capitalised: the published key is "Linear"
        self.negative_slope = negative_slope

    def forward(self, x):
        x = self.Linear(x)
        return x if self.negative_slope is None else F.leaky_relu(x, self.negative_slope)


class FieldNetwork(nn.Module):
    """The semantic field of one attribute: W code (B, latent_dim) → field value (B, latent_dim)."""

    def __init__(self, num_layers: int = 8, latent_dim: int = 512, hidden_dim: int = 512, negative_slope: float = 0.2):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"num_layers must be at least 2, got {num_layers}")
        self.config = dict(num_layers=num_layers, latent_dim=latent_dim, hidden_dim=hidden_dim,
                           negative_slope=negative_slope)
        dims = [latent_dim] + [hidden_dim] * (num_layers - 1) + [latent_dim]
        last = num_layers - 1
        self.field = nn.Sequential(*(
            _FieldLayer(dims[i], dims[i + 1], None if i == last else negative_slope) for i in range(num_layers)
        ))

    def forward(self, w):
        return self.field(w)


def field_step(field: FieldNetwork, style_mlp: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor,
               w_plus: torch.Tensor, replaced_layers: int, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One Talk-to-Edit edit step; returns the next (w, w_plus).

    ``style_mlp`` is the generator's mapping MLP *without* its leading PixelNorm (rosinality's
    ``generator.style[1:]``). The step in W is ``style_mlp(field(w)) - style_mlp(0)``; it is added,
    times ``alpha`` (+1 raises the attribute, -1 lowers it), to ``w`` and to the first
    ``replaced_layers`` rows of ``w_plus`` (B, n_latent, 512).
    """
    if w_plus.ndim != 3 or not 0 < replaced_layers <= w_plus.shape[1]:
        raise ValueError(f"w_plus must be (B, n_latent, C) with 0 < replaced_layers <= n_latent, "
                         f"got {tuple(w_plus.shape)} and {replaced_layers}")
    value = field(w)  # (B, 512)
    delta = alpha * (style_mlp(value) - style_mlp(torch.zeros_like(value)))  # (B, 512) step in W
    w_plus = w_plus.clone()
    w_plus[:, :replaced_layers] += delta.unsqueeze(1)
    return w + delta, w_plus


# ------------------------------------------------------------------------------ attribute predictor


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _FcBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fc, self.bn = nn.Linear(cin, cout), nn.BatchNorm1d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.fc(x)))


class AttributePredictor(nn.Module):
    """Multi-head ResNet-50: normalised image (B, 3, 128, 128) → logits (B, 5, num_degrees) in their
    head order (``ATTRIBUTES``); ``our_logits`` / ``read_degrees`` map them onto ours."""

    def __init__(self, blocks: Sequence[int] = (3, 4, 6, 3), width: int = 64, stem_dim: int = 512,
                 head_dim: int = 256, num_degrees: int = MAX_DEGREE + 1):
        super().__init__()
        self.config = dict(blocks=list(blocks), width=width, stem_dim=stem_dim, head_dim=head_dim,
                           num_degrees=num_degrees)
        self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
        cin = width
        for stage, count in enumerate(blocks):
            planes = width * 2 ** stage
            layer = []
            for i in range(count):
                layer.append(_Bottleneck(cin, planes, stride=2 if stage > 0 and i == 0 else 1))
                cin = planes * _Bottleneck.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self.stem = _FcBlock(cin, stem_dim)
        for spec in ATTRIBUTES:
            self.add_module(spec.head, nn.Sequential(_FcBlock(stem_dim, head_dim), nn.Linear(head_dim, num_degrees)))

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        features = self.stem(x.mean(dim=(2, 3)))  # (B, stem_dim)
        return torch.stack([getattr(self, spec.head)(features) for spec in ATTRIBUTES], dim=1)  # (B, 5, D)


# ------------------------------------------------------------------------------ ArcFace


class _SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.PReLU(),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x):
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class _IRBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, use_se: bool):
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cin)
        self.conv1, self.bn1 = nn.Conv2d(cin, cin, 3, 1, 1, bias=False), nn.BatchNorm2d(cin)
        self.prelu = nn.PReLU()  # one slope, used after both convs
        self.conv2, self.bn2 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.se = _SEBlock(planes) if use_se else None
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        return self.prelu(out + (x if self.downsample is None else self.downsample(x)))


class ArcFaceResNet18(nn.Module):
    """ArcFace's ResNet-Face-18: grey face (B, 1, 128, 128) in [-1, 1] → embedding (B, embed_dim).

    The published model's dropout (before ``fc5``) has no weights and is the identity at inference,
    so it is left out.
    """

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512), blocks: Sequence[int] = (2, 2, 2, 2),
                 embed_dim: int = 512, use_se: bool = False):
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"widths and blocks need four stages, got {list(widths)} and {list(blocks)}")
        self.config = dict(widths=list(widths), blocks=list(blocks), embed_dim=embed_dim, use_se=use_se)
        self.conv1, self.bn1 = nn.Conv2d(1, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0])
        self.prelu = nn.PReLU()
        cin = widths[0]
        for stage, (planes, count) in enumerate(zip(widths, blocks)):
            layer = [_IRBlock(cin if i == 0 else planes, planes, 2 if stage > 0 and i == 0 else 1, use_se)
                     for i in range(count)]
            cin = planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.bn4 = nn.BatchNorm2d(cin)
        side = INPUT_SIZE // 2 // 2 ** 3  # max-pool, then three strided stages: 8
        self.fc5, self.bn5 = nn.Linear(cin * side * side, embed_dim), nn.BatchNorm1d(embed_dim)

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"ArcFace takes grey faces (B, 1, {INPUT_SIZE}, {INPUT_SIZE}) in [-1, 1], "
                             f"got {tuple(x.shape)}; see arcface_input")
        x = F.max_pool2d(self.prelu(self.bn1(self.conv1(x))), 2, 2)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn5(self.fc5(self.bn4(x).flatten(1)))


# ------------------------------------------------------------------------------ loading


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a published checkpoint, read safely (``weights_only``) onto the CPU.

    Accepts a bare state dict or one nested under ``WRAPPER_KEYS``, and strips the ``module.``
    prefix that ``DataParallel`` adds.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; download Talk-to-Edit's pretrained models "
                                f"(see its README) and point to the file")
    try:
        obj = safe_load(path)
    except Exception as err:  # torch raises KeyError, EOFError, UnpicklingError, RuntimeError, … for bad files
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)|but got <class '([\w.]+)'>", str(err))
        if zipfile.is_zipfile(path) and (refused or "Weights only load failed" in str(err)):
            what = f"an object of type {refused.group(1) or refused.group(2)}" if refused else "objects"
            raise CheckpointError(f"{path} holds {what} beyond tensors and plain containers, so it is not loaded "
                                  f"(weights_only=True)") from err
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(err).__name__})") from err
    state = obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        nested = [key for key in WRAPPER_KEYS if isinstance(obj.get(key), dict)]
        state = obj[nested[0]] if nested else None
    if not isinstance(state, dict) or not _is_state_dict(state):
        top = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path} holds no state dict (top level: {top}); expected tensors by name, "
                              f"bare or under one of {list(WRAPPER_KEYS)}")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def load_weights(model: nn.Module, path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Loads ``path`` into ``model`` after checking every key and shape; returns it frozen in eval mode."""
    state = read_state_dict(path)
    expected = model.state_dict()
    where = f"{type(model).__name__}({', '.join(f'{k}={v}' for k, v in model.config.items())})"
    check_state(expected, state, str(path), where)
    model.load_state_dict(state, strict=True)
    logger.info("loaded %s from %s", where, path)
    return model.to(device).eval().requires_grad_(False)


def load_field(path: str | Path, device: str | torch.device = "cpu", **config) -> FieldNetwork:
    """A published field (``{128,1024}_field/<Attribute>.pth``); ``config`` overrides the published one."""
    return load_weights(FieldNetwork(**config), path, device)


def load_predictor(path: str | Path, device: str | torch.device = "cpu", **config) -> AttributePredictor:
    """The published attribute predictor (``predictor_{128,1024}.pth.tar``, ``eval_predictor.pth.tar``)."""
    return load_weights(AttributePredictor(**config), path, device)


def load_arcface(path: str | Path, device: str | torch.device = "cpu", **config) -> ArcFaceResNet18:
    """The published ArcFace identity model (``arcface_resnet18_110.pth``)."""
    return load_weights(ArcFaceResNet18(**config), path, device)
