"""Tiny random files in the W+ backend's published layouts, written from the published descriptions.

The layouts are spelled out here key by key from the published code (``csxmli2016/w-plus-adapter``'s
``WProjModel``, ``WPlusAttnProcessor`` and ``transfer_pytorchmodel_to_wplus.py``; ``omertov/encoder4editing``'s
``Encoder4Editing(50, 'ir_se')``, pSp's ``helpers.py`` and its coach's save dict), not from our
modules, so loading them checks our modules against the published names. Widths, unit counts,
the input size and the W+ rows are small; the names and the structure are the published ones:

- ``wplus_adapter.bin``: ``torch.save({"w_proj": ..., "wplus_adapter": ...})``. The published file
  groups 18 W+ rows as 4/4/4/6 into its four tokens; the tiny codes have 8 rows, grouped 2/2/2/2.
- ``e4e_ffhq_encode.pt``: ``torch.save({"state_dict": {"encoder.…", "decoder.…"}, "opts": {...},
  "latent_avg": (rows, C)})`` with a rosinality generator as the decoder (32 px: 8 W+ rows).
- Talk-to-Edit's ``pretrained_models``: ``1024_field/<Attribute>.pth`` and ``predictor_1024.pth.tar``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from test_stylegan2_generator import tiny_state_dict
from test_talk_to_edit_models import TINY_PREDICTOR, field_layout, predictor_layout, random_state

STYLE = 16  # W+ row width of the tiny codes
ROWS = 8  # W+ rows: a 32 px generator's
DECODER = dict(size=32, style_dim=STYLE, n_mlp=2, channels=[16, 16, 8, 8])
TINY_E4E = dict(widths=(16, 24, 32, STYLE), units=(1, 2, 1, 1), input_size=64)
PUBLISHED_E4E = dict(widths=(64, 128, 256, 512), units=(3, 4, 14, 3), input_size=256, rows=18)
TINY_GROUPS = (2, 2, 2, 2)
E4E_OPTS = {"exp_dir": "experiments/ffhq_encode", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing",
            "start_from_latent_avg": True, "lpips_lambda": 0.8, "id_lambda": 0.1, "w_discriminator_lambda": 0.1,
            "progressive_start": 20000, "checkpoint_path": None, "stylegan_weights": "stylegan2-ffhq-config-f.pt",
            "batch_size": 8, "learning_rate": 0.0001, "device": "cuda:0"}


def _bn(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def e4e_layout(widths=TINY_E4E["widths"], units=TINY_E4E["units"], input_size=TINY_E4E["input_size"],
               rows=ROWS) -> dict[str, tuple]:
    """``Encoder4Editing(50, 'ir_se')``'s keys (``encoder.`` prefixed) and shapes; published: 64/128/256/512
    widths, 3/4/14/3 units, 256 px, 18 rows."""
    style = widths[-1]
    out = {"input_layer.0.weight": (widths[0], 3, 3, 3), **_bn("input_layer.1", widths[0]),
           "input_layer.2.weight": (widths[0],)}
    unit, cin = 0, widths[0]
    for width, count in zip(widths, units):  # get_blocks: each stage's first unit has stride 2
        for _ in range(count):
            p = f"body.{unit}"
            if cin != width:  # bottleneck_IR_SE: a conv shortcut when the width changes, else MaxPool2d(1, stride)
                out[f"{p}.shortcut_layer.0.weight"] = (width, cin, 1, 1)
                out.update(_bn(f"{p}.shortcut_layer.1", width))
            out.update(_bn(f"{p}.res_layer.0", cin))
            out[f"{p}.res_layer.1.weight"] = (width, cin, 3, 3)
            out[f"{p}.res_layer.2.weight"] = (width,)  # PReLU(depth)
            out[f"{p}.res_layer.3.weight"] = (width, width, 3, 3)
            out.update(_bn(f"{p}.res_layer.4", width))
            out[f"{p}.res_layer.5.fc1.weight"] = (width // 16, width, 1, 1)  # SEModule(depth, 16)
            out[f"{p}.res_layer.5.fc2.weight"] = (width, width // 16, 1, 1)
            unit, cin = unit + 1, width
    for i in range(rows):  # GradualStyleBlock(512, 512, 16 / 32 / 64) for a 256 px input
        spatial = input_size // 16 * (1 if i < 3 else 2 if i < 7 else 4)
        for j in range(int(math.log2(spatial))):
            out[f"styles.{i}.convs.{2 * j}.weight"] = (style, style, 3, 3)
            out[f"styles.{i}.convs.{2 * j}.bias"] = (style,)
        out[f"styles.{i}.linear.weight"] = (style, style)  # EqualLinear
        out[f"styles.{i}.linear.bias"] = (style,)
    out.update({"latlayer1.weight": (style, widths[2], 1, 1), "latlayer1.bias": (style,),
                "latlayer2.weight": (style, widths[1], 1, 1), "latlayer2.bias": (style,)})
    return {f"encoder.{k}": v for k, v in out.items()}


def e4e_checkpoint(seed: int = 0, decoder: bool = True) -> dict:
    """The tiny e4e checkpoint as e4e's coach saves it: state_dict (encoder and decoder), opts, latent_avg."""
    state = random_state(e4e_layout(), seed=seed)
    for key in state:  # PReLU slopes as trained ones start, so the random net neither explodes nor dies
        if key.endswith(("res_layer.2.weight", "input_layer.2.weight")):
            state[key] = torch.full_like(state[key], 0.25)
    if decoder:
        state.update({f"decoder.{k}": v for k, v in tiny_state_dict(seed=seed, **DECODER).items()})
    g = torch.Generator().manual_seed(seed + 1)
    return {"state_dict": state, "opts": dict(E4E_OPTS, stylegan_size=DECODER["size"]),
            "latent_avg": 0.1 * torch.randn(ROWS, STYLE, generator=g)}


def wplus_adapter_state(unet, seed: int = 0, groups=TINY_GROUPS, style: int = STYLE) -> dict[str, dict]:
    """The published two-part state for ``unet``: ``w_proj`` (proj_0..3, norm) and ``wplus_adapter``,
    numbered by the place of each processor in ``unet.attn_processors``, keys only on the cross-attention
    ones (``attn2``), three bias-free linears each."""
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def linear(d_out: int, d_in: int) -> torch.Tensor:
        return torch.randn(d_out, d_in, generator=g) * d_in**-0.5

    w_proj = {f"proj_{k}.weight": linear(cross, style * rows) for k, rows in enumerate(groups)}
    w_proj.update({"norm.weight": torch.ones(cross), "norm.bias": torch.zeros(cross)})
    adapter = {}
    for number, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            inner = unet.get_submodule(name.removesuffix(".processor")).to_q.out_features
            adapter[f"{number}.to_k_wplus.weight"] = linear(inner, cross)
            adapter[f"{number}.to_v_wplus.weight"] = linear(inner, cross)
            adapter[f"{number}.to_q_wplus.weight"] = linear(inner, inner)
    return {"w_proj": w_proj, "wplus_adapter": adapter}


def build_wplus_files(root: Path, pipeline_folder: Path, seed: int = 0, predictor: bool = True) -> dict[str, Path]:
    """The adapter, e4e, Talk-to-Edit's folder (with or without the predictor) and an InterFaceGAN folder."""
    from diffusers import UNet2DConditionModel

    from chatedit.tools.stylegan2 import talk_to_edit as tte

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(Path(pipeline_folder) / "unet")
    torch.save(wplus_adapter_state(unet, seed), root / "wplus_adapter.bin")
    torch.save(e4e_checkpoint(seed), root / "e4e_ffhq_encode.pt")
    weights = root / ("pretrained_models" if predictor else "pretrained_models_fields_only")
    (weights / "1024_field").mkdir(parents=True)
    for i, spec in enumerate(tte.ATTRIBUTES):
        torch.save(random_state(field_layout(num_layer=2, dim=STYLE, hidden=32), seed=seed + i),
                   weights / "1024_field" / spec.field_file)
    if predictor:
        torch.save({"state_dict": random_state(predictor_layout(**TINY_PREDICTOR), seed=seed), "epoch": 20},
                   weights / "predictor_1024.pth.tar")
    directions = root / "interfacegan_directions"
    directions.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(seed + 7)
    for name in ("smile", "age"):  # e4e's editings/interfacegan_directions: (1, 512) tensors
        torch.save(torch.randn(1, STYLE, generator=g), directions / f"{name}.pt")
    return {"adapter": root / "wplus_adapter.bin", "e4e": root / "e4e_ffhq_encode.pt", "weights": weights,
            "directions": directions}
