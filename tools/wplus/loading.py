"""Reading the W+ backend's published files: the W+ adapter, e4e, InterFaceGAN directions, SD 1.5.

Every checkpoint is read with ``safe_load`` (``weights_only=True`` and the StyleGAN2 backend's
short allow-list), rebuilt from its own shapes and loaded strictly; a file that is not what it
should be is refused with a ``CheckpointError`` naming the file and the first missing, unexpected
or misshapen key. Talk-to-Edit's files (fields, predictor, generator) load through the StyleGAN2
backend's loaders.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from chatedit.attributes import attribute_names

from ..stylegan2.checkpoints import CheckpointError, check_state, safe_load
from ..stylegan2.generator import Generator
from .adapter import NUM_TOKENS, WPlusAdapter, WPlusAttnProcessor, WProjection, processor_layout
from .e4e import E4EEncoder, infer_config

logger = logging.getLogger(__name__)

ADAPTER_LAYOUT = ("a W+ adapter file is torch.save({'w_proj': {proj_0.weight … proj_3.weight, norm.weight, "
                  "norm.bias}, 'wplus_adapter': {'1.to_k_wplus.weight', '1.to_v_wplus.weight', "
                  "'1.to_q_wplus.weight', … one number per cross-attention processor}}), as wplus_adapter.bin is")
E4E_LAYOUT = ("an e4e file is torch.save({'state_dict': {'encoder.…', 'decoder.…'}, 'opts': {...}, 'latent_avg': "
              "(18, 512)}), as e4e_ffhq_encode.pt is")
# InterFaceGAN's file names (e4e's editings/interfacegan_directions) for our attributes
DIRECTION_NAMES = {"smile": "smiling", "age": "age"}


def read_checkpoint(path: str | Path, what: str) -> dict:
    """A checkpoint's top-level dict, read safely; ``what`` names the file's kind in errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        obj = safe_load(path)
    except Exception as err:  # torch raises many types for a file that is not a safe checkpoint
        raise CheckpointError(f"{path} is not a {what} that loads with weights_only=True (only tensors, plain "
                              f"containers and numbers): {type(err).__name__}: {str(err).splitlines()[0]}") from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a {what}")
    return obj


def check_model_state(model: nn.Module, state: Mapping, source: str, prefix: str = "") -> None:
    """``check_state`` of ``state`` against ``model``, rebuilt from the file's other shapes."""
    check_state(model.state_dict(), state, source, "the model rebuilt from the file's other shapes", prefix)


# --------------------------------------------------------------------------- e4e


@dataclass
class E4E:
    """A loaded e4e checkpoint: the encoder, the mean code it adds, and the generator it was trained with."""

    encoder: E4EEncoder
    latent_avg: torch.Tensor  # (rows, style_dim)
    decoder: Generator | None  # the 'decoder.' StyleGAN2 generator, when the file has one

    @torch.no_grad()
    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        """Aligned faces (B, 3, H, W) in [0, 1] → W+ codes (B, rows, style_dim), as pSp's forward makes them."""
        size = self.encoder.input_size
        x = torch.nn.functional.interpolate(faces.float(), size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=True) if faces.shape[-1] != size else faces.float()
        device = self.latent_avg.device
        return self.encoder(x.to(device) * 2 - 1) + self.latent_avg  # Normalize([0.5] * 3, [0.5] * 3)

    def to(self, device) -> "E4E":
        self.encoder, self.latent_avg = self.encoder.to(device), self.latent_avg.to(device)
        self.decoder = self.decoder.to(device) if self.decoder is not None else None
        return self


def load_e4e(path: str | Path, device: str | torch.device = "cpu") -> E4E:
    """e4e's published checkpoint (``e4e_ffhq_encode.pt``); see ``e4e.py`` for the layout."""
    path = Path(path)
    checkpoint = read_checkpoint(path, "e4e checkpoint")
    # 1. the wrapped state dict, split into encoder and decoder
    state = checkpoint.get("state_dict")
    if not isinstance(state, Mapping) or not any(str(k).startswith("encoder.") for k in state):
        raise CheckpointError(f"{path} has no 'state_dict' with 'encoder.' keys (top level: "
                              f"{sorted(map(str, checkpoint))[:8]}); {E4E_LAYOUT}")
    encoder_state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    decoder_state = {k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")}
    others = [k for k in state if not k.startswith(("encoder.", "decoder."))]
    if others:
        raise CheckpointError(f"{path} has unexpected key {others[0]!r} in 'state_dict'; {E4E_LAYOUT}")
    # 2. the encoder, rebuilt from its shapes and loaded strictly
    try:
        config = infer_config(encoder_state, str(path))
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    encoder = E4EEncoder(**config)
    check_model_state(encoder, encoder_state, str(path), "encoder.")
    encoder.load_state_dict(encoder_state, strict=True)
    # 3. the mean code pSp adds to every output
    rows, style = encoder.rows, encoder.style_dim
    latent_avg = checkpoint.get("latent_avg")
    if not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(f"{path} is missing 'latent_avg', the mean code e4e's outputs are offsets from; "
                              f"{E4E_LAYOUT}")
    if latent_avg.shape[-1] != style or latent_avg.numel() not in (style, rows * style):
        raise CheckpointError(f"{path}: 'latent_avg' has shape {tuple(latent_avg.shape)}; this encoder needs "
                              f"({rows}, {style}) or ({style},)")
    latent_avg = latent_avg.float().reshape(-1, style).expand(rows, style).clone()
    # 4. the generator it was trained with, when saved beside it
    decoder = None
    if decoder_state:
        try:
            decoder = Generator.from_state_dict(decoder_state, latent_avg[0], source=f"{path} ('decoder.' keys)")
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        if decoder.n_latent != rows or decoder.style_dim != style:
            raise CheckpointError(f"{path}: the decoder takes W+ ({decoder.n_latent}, {decoder.style_dim}) but the "
                                  f"encoder makes ({rows}, {style})")
    logger.info("loaded e4e from %s: %d W+ rows of %d, input %d px%s", path, rows, style, encoder.input_size,
                f", {decoder.size} px decoder" if decoder is not None else "")
    return E4E(encoder.eval().requires_grad_(False), latent_avg, decoder).to(device)


# --------------------------------------------------------------------------- the W+ adapter


def load_wplus_adapter(path: str | Path, unet, style_dim: int, rows: int, scale: float = 1.0) -> WPlusAdapter:
    """The published ``wplus_adapter.bin`` for ``unet``: its projection, and its processors installed on
    the UNet's cross-attention layers (self-attention keeps the UNet's own). ``style_dim`` and ``rows``
    are the W+ codes' shape (from e4e), which the projection must take."""
    path = Path(path)
    checkpoint = read_checkpoint(path, "W+ adapter checkpoint")
    parts = {name: checkpoint.get(name) for name in ("w_proj", "wplus_adapter")}
    for name, part in parts.items():
        if not isinstance(part, Mapping) or not part:
            raise CheckpointError(f"{path} has no {name!r} state dict (top level: {sorted(map(str, checkpoint))[:8]}); "
                                  f"{ADAPTER_LAYOUT}")
    # 1. the projection: one token per row group, the groups read from the shapes
    w_proj, cross = parts["w_proj"], unet.config.cross_attention_dim
    groups = []
    for k in range(NUM_TOKENS):
        key = f"proj_{k}.weight"
        if key not in w_proj:
            raise CheckpointError(f"{path} is missing key {'w_proj.' + key!r}; {ADAPTER_LAYOUT}")
        width = w_proj[key].shape[-1]
        if w_proj[key].ndim != 2 or width % style_dim:
            raise CheckpointError(f"{path}: 'w_proj.{key}' has shape {tuple(w_proj[key].shape)}, not (C, rows × "
                                  f"{style_dim}) for W+ rows of {style_dim}")
        groups.append(width // style_dim)
    if sum(groups) != rows:
        raise CheckpointError(f"{path}: the projection reads {sum(groups)} W+ rows (groups {groups}) but the codes "
                              f"have {rows}")
    projection = WProjection(tuple(groups), style_dim, cross)
    check_model_state(projection, w_proj, str(path), "w_proj.")
    projection.load_state_dict(w_proj, strict=True)
    # 2. the processors, numbered by their place in the UNet's attention processors
    layout, adapter_state = processor_layout(unet), parts["wplus_adapter"]
    processors: dict[str, WPlusAttnProcessor] = {}
    for number, (name, inner, cross_in) in layout.items():
        processor = WPlusAttnProcessor(inner, cross_in, scale)
        state = {key[len(f"{number}."):]: value for key, value in adapter_state.items()
                 if key.startswith(f"{number}.")}
        check_model_state(processor, state, str(path), f"wplus_adapter.{number}.")
        processor.load_state_dict(state, strict=True)
        processors[name] = processor
    numbered = {f"{n}." for n in layout}
    unexpected = [key for key in adapter_state if not any(key.startswith(prefix) for prefix in numbered)]
    if unexpected:
        raise CheckpointError(f"{path} has unexpected key 'wplus_adapter.{unexpected[0]}': this UNet's cross-attention "
                              f"processors are numbered {sorted(layout)}")
    logger.info("loaded the W+ adapter %s: %d W+ rows in groups %s, %d cross-attention layers", path.name, rows,
                groups, len(processors))
    return install(unet, projection, processors)


def install(unet, projection: WProjection, processors: dict[str, WPlusAttnProcessor]) -> WPlusAdapter:
    """The adapter on ``unet``, at its device and dtype: ``processors`` replace the named attention processors
    (the rest keep the UNet's own)."""
    parameter = next(unet.parameters())
    for processor in processors.values():
        processor.to(parameter.device, parameter.dtype).requires_grad_(False)
    current = dict(unet.attn_processors)
    unet.set_attn_processor({name: processors.get(name, current[name]) for name in current})
    return WPlusAdapter(projection.to(parameter.device, parameter.dtype).eval().requires_grad_(False), processors)


# --------------------------------------------------------------------------- linear directions


def load_directions(folder: str | Path, rows: int, style_dim: int) -> dict[str, torch.Tensor]:
    """InterFaceGAN directions in ``folder``: ``<attribute>.pt`` (our names) or e4e's ``smile.pt`` / ``age.pt``,
    each a tensor (style_dim,), (1, style_dim) or (rows, style_dim). Returns attribute → (rows, style_dim)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--directions {folder} is not a folder")
    names, found = attribute_names(), {}
    for path in sorted(folder.glob("*.pt")):
        attribute = DIRECTION_NAMES.get(path.stem, path.stem)
        if attribute not in names:
            raise ValueError(f"direction files must be named after an attribute ({', '.join(names)}) or be "
                             f"InterFaceGAN's {', '.join(DIRECTION_NAMES)}; got {path.name} in {folder}")
        try:
            direction = safe_load(path)
        except Exception as err:
            raise CheckpointError(f"{path} is not a tensor saved with torch.save: {type(err).__name__}") from err
        if not isinstance(direction, torch.Tensor) or direction.shape[-1] != style_dim \
                or direction.numel() not in (style_dim, rows * style_dim):
            shape = tuple(direction.shape) if isinstance(direction, torch.Tensor) else type(direction).__name__
            raise CheckpointError(f"{path}: a direction must be ({style_dim},), (1, {style_dim}) or ({rows}, "
                                  f"{style_dim}), got {shape}")
        found[attribute] = direction.float().reshape(-1, style_dim).expand(rows, style_dim).clone()
    return found


# --------------------------------------------------------------------------- Stable Diffusion


def load_text2image(model: str, device: str | None = None):
    """SD 1.5 (or any SD 1.x folder or cached hub id) as a text-to-image pipeline on ``device``, half
    precision on a GPU, with the Euler scheduler the W+ adapter's demo uses."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    folder = Path(model).expanduser()
    if folder.exists():
        index = folder / "model_index.json"
        if not index.is_file():
            raise ValueError(f"--model {model} is not a diffusers pipeline folder (no model_index.json)")
        kind = json.loads(index.read_text()).get("_class_name", "")
        if "XL" in kind:
            raise ValueError(f"--model {model} is an SDXL pipeline; the published W+ adapter is for SD 1.5")
    torch_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float16 if torch_device.type == "cuda" else torch.float32
    try:
        pipe = StableDiffusionPipeline.from_pretrained(model, dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"could not load the pipeline {model}: {str(error).splitlines()[0]}") from error
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(torch_device)


# --------------------------------------------------------------------------- Talk-to-Edit's files


def field_config(state: Mapping[str, torch.Tensor]) -> dict:
    """``FieldNetwork`` arguments from a field's state dict (``field.{i}.Linear.weight`` (out, in))."""
    layers = 0
    while f"field.{layers}.Linear.weight" in state:
        layers += 1
    if not layers:
        return {}  # not a field: the strict load names what is missing
    first = state["field.0.Linear.weight"]
    return dict(num_layers=layers, latent_dim=first.shape[1], hidden_dim=first.shape[0] if layers > 1 else 512)


def predictor_config(state: Mapping[str, torch.Tensor]) -> dict:
    """``AttributePredictor`` arguments from its state dict: units per stage, first width, stem and head widths."""
    if "conv1.weight" not in state or "stem.fc.weight" not in state:
        return {}  # not a predictor: the strict load names what is missing
    blocks, stage = [], 1
    while f"layer{stage}.0.conv1.weight" in state:
        count = 0
        while f"layer{stage}.{count}.conv1.weight" in state:
            count += 1
        blocks.append(count)
        stage += 1
    head = next((v for k, v in state.items() if k.startswith("classifier") and k.endswith(".0.fc.weight")), None)
    return dict(blocks=blocks, width=state["conv1.weight"].shape[0], stem_dim=state["stem.fc.weight"].shape[0],
                **({"head_dim": head.shape[0]} if head is not None else {}))
