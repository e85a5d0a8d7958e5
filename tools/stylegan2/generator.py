"""A pure-PyTorch StyleGAN2 generator that loads rosinality-format checkpoints.

The modules, parameter names and shapes follow ``Generator`` in rosinality/stylegan2-pytorch
(``model.py``), so its published ``.pt`` files and its training checkpoints load with
``strict=True``. Its compiled ops (``upfirdn2d``, ``fused_leaky_relu``) are replaced by plain
PyTorch, so the same code runs on a CPU and on CUDA.

Editing happens in W+:

- ``mapping(z)``: z (B, style_dim) → w (B, style_dim);
- ``to_w_plus(w)``: w (B, style_dim) → (B, n_latent, style_dim), one copy of w per layer;
- ``synthesis(w_plus)``: (B, n_latent, style_dim) → images (B, 3, size, size), nominally in
  [-1, 1] and not clamped (``to_image01`` maps them to [0, 1] for display).

Synthesis always adds the noise maps stored in the checkpoint (``noises.noise_{i}``) and never
mixes styles, so the same latent gives the same image on every call.

Half precision: under ``torch.autocast("cuda", dtype=torch.float16)`` (what the backend's ``half``
turns on for drawing) the convolutions and linear layers run in float16 and the element-wise ops
(bias, noise, leaky ReLU, the FIR filters' inputs) follow PyTorch's type promotion. The one
hazard is demodulation: a demodulated conv then scales its style and weight to unit magnitude
first and computes ``rsqrt(Σ style² · Σ weight²)`` in float32 (see ``ModulatedConv2d``). In
float32 nothing of this runs: the arithmetic is exactly rosinality's.

``load_generator(path)`` reads a checkpoint safely (``weights_only=True``) and rebuilds the
architecture from the tensor shapes alone: resolution, widths, ``n_mlp`` and ``style_dim`` all
come from the file, so any resolution, channel multiplier or narrow test-sized generator loads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoints import check_state, safe_load

logger = logging.getLogger(__name__)

BLUR_TAPS = (1, 3, 3, 1)  # rosinality's (and NVIDIA's) low-pass filter for every resampling


# ----------------------------------------------------------------------------------------------
# Ops: plain-PyTorch equivalents of rosinality's compiled CUDA kernels


def make_blur_kernel(taps: Sequence[float] = BLUR_TAPS, gain: float = 1.0) -> torch.Tensor:
    """The separable 2-D FIR filter (outer product of ``taps``), scaled to sum to ``gain``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k * (gain / k.sum())


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with a 2-D FIR kernel, downsample; channel by channel.

    x: (B, C, H, W); kernel: (kh, kw); ``pad`` = (before, after), the same on both axes (negative
    values crop). Returns (B, C, (H * up + before + after - kh) // down + 1, same for W).
    """
    b, c, h, w = x.shape
    if up > 1:
        # (B, C, H, 1, W, 1): put up-1 zeros after every sample along both axes
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    before, after = pad
    x = F.pad(x, [before, after, before, after])
    # the same filter for every channel: fold channels into the batch, one (1, 1, kh, kw) filter;
    # conv2d correlates, so flip the kernel for a true convolution (as the CUDA op does)
    _, _, hp, wp = x.shape
    weight = kernel.flip([0, 1]).to(x.dtype)[None, None]
    x = F.conv2d(x.reshape(b * c, 1, hp, wp), weight)
    x = x.reshape(b, c, x.shape[-2], x.shape[-1])
    return x[:, :, ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2)) -> torch.Tensor:
    """Add a per-channel bias (dim 1), leaky ReLU, then ×√2 to keep the signal's scale."""
    bias = bias.view(1, -1, *[1] * (x.ndim - 2))
    return F.leaky_relu(x + bias, negative_slope) * scale


def reduced_precision(x: torch.Tensor) -> bool:
    """Whether ``x``'s layer runs in 16 bits: a float16/bfloat16 tensor, or autocast on for its device."""
    return x.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(x.device.type)


def to_image01(x: torch.Tensor) -> torch.Tensor:
    """Generator output (nominally [-1, 1], unclamped) → images in [0, 1]."""
    return ((x + 1) / 2).clamp(0, 1)


# ----------------------------------------------------------------------------------------------
# Layers. Attribute names are part of the checkpoint format: they make rosinality's key names.
# Weights are stored at unit variance and scaled at run time ("equalized learning rate").


class PixelNorm(nn.Module):
    """Scale each vector to unit root-mean-square along dim 1."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with run-time weight scaling; ``lr_mul`` scales weight and bias alike."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x):
        out = F.linear(x, self.weight * self.scale)
        bias = self.bias * self.lr_mul
        return fused_leaky_relu(out, bias) if self.activate else out + bias


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter with fixed padding; ``gain`` 4 after a ×2 upsampling keeps the brightness."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS, gain))
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """×2 upsampling by zero insertion and the blur filter: (B, C, H, W) → (B, C, 2H, 2W)."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS, factor ** 2))
        self.factor = factor
        p = len(BLUR_TAPS) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's convolution: w scales the input channels, then each output is demodulated.

    Scaling the input channels by the style and the outputs by the demodulation factor equals
    convolving with the per-sample modulated, demodulated weight (rosinality's grouped "fused"
    form), with one shared weight for the whole batch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.kernel_size, self.demodulate, self.upsample = kernel_size, demodulate, upsample
        if upsample:
            # a stride-2 transposed conv gives 2H + k - 2 pixels; the blur trims them back to 2H
            p = (len(BLUR_TAPS) - 2) - (kernel_size - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4)
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1)

    def forward(self, x, w):
        b = x.shape[0]
        style = self.modulation(w)  # (B, in) per-sample scale of each input channel
        weight = self.weight[0] * self.scale  # (out, in, k, k)
        half = self.demodulate and reduced_precision(x)
        if half:
            # demodulation cancels any per-sample scale of the style and any per-output-channel
            # scale of the weight, so shrink both to a largest magnitude of 1 (the weight's to
            # ``scale``) before the float16 conv, where x · style and its sums could overflow
            # (NVIDIA's StyleGAN2-ADA does the same for its float16 layers); float32 is untouched
            style = style / style.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)
            weight = weight * (self.scale / weight.abs().amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8))
        x = x * style.view(b, -1, 1, 1)
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)  # (B, out, 2H + 1, 2W + 1)
            x = self.blur(x)  # (B, out, 2H, 2W)
        else:
            x = F.conv2d(x, weight, padding=self.kernel_size // 2)
        if self.demodulate and half:
            # the same factor in float32, outside autocast (which would run the matmul in float16,
            # where squares of large styles overflow and a sum of tiny ones underflows to 0, so
            # rsqrt gives inf); the product is about unit scale again, safe to store in x's dtype
            with torch.autocast(x.device.type, enabled=False):
                demod = torch.rsqrt(style.float().pow(2) @ weight.float().pow(2).sum(dim=(2, 3)).T + 1e-8)
                x = (x.float() * demod.view(b, -1, 1, 1)).to(x.dtype)
        elif self.demodulate:
            # 1 / ‖modulated weight‖ per sample and output channel: Σ_in style² · Σ_kk weight², (B, out)
            demod = torch.rsqrt(style.pow(2) @ weight.pow(2).sum(dim=(2, 3)).T + 1e-8)
            x = x * demod.view(b, -1, 1, 1)
        return x


class NoiseInjection(nn.Module):
    """Adds a learned multiple of a fixed noise map (1, 1, H, W), the same for the whole batch."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4×4 block every image starts from."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int):
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3×3 conv (optionally ×2 upsampling), noise, bias and leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x, w, noise):
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB (no demodulation), added to the upsampled RGB of the block before."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, w, skip=None):
        out = self.conv(x, w) + self.bias
        return out if skip is None else out + self.upsample(skip)


# ----------------------------------------------------------------------------------------------
# The generator


def rosinality_channels(size: int, channel_multiplier: int = 2) -> list[int]:
    """rosinality's width at each resolution 4, 8, ..., ``size`` (config-f is multiplier 2)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    if size not in table:
        raise ValueError(f"rosinality's channel table covers sizes {sorted(table)}, not {size}; pass `channels`")
    return [table[2 ** i] for i in range(2, int(math.log2(size)) + 1)]


class Generator(nn.Module):
    """StyleGAN2 generator in rosinality's module layout; edits happen in W+ (see the module doc).

    ``channels`` gives the width at each resolution 4, 8, ..., ``size`` (``log2(size) - 1``
    values); left out, it is rosinality's table for ``size`` and ``channel_multiplier``. A new
    generator draws its weights and noise maps from ``seed``, leaving the global RNG alone.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 channels: Sequence[int] | None = None, lr_mlp: float = 0.01, seed: int = 0):
        super().__init__()
        # 1. check inputs
        log_size = int(math.log2(size)) if size >= 4 else 0
        if size < 4 or 2 ** log_size != size:
            raise ValueError(f"`size` must be a power of two of at least 4 but is {size}")
        channels = rosinality_channels(size, channel_multiplier) if channels is None else [int(c) for c in channels]
        if len(channels) != log_size - 1:
            raise ValueError(f"`channels` needs one width per resolution 4..{size} ({log_size - 1} values) "
                             f"but has {len(channels)}: {channels}")
        self.config = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels, lr_mlp=lr_mlp)
        self.size, self.style_dim, self.n_mlp, self.log_size = size, style_dim, n_mlp, log_size
        self.num_layers = 2 * (log_size - 2) + 1  # styled convs, each with its own noise map
        # one w per styled conv, plus one for the last ToRGB (every other ToRGB shares its w with
        # the next block's first conv)
        self.n_latent = 2 * log_size - 2

        # 2. build, drawing initial weights from our own seed; attribute order = state_dict order
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.style = nn.Sequential(
                PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)]
            )
            self.input = ConstantInput(channels[0])
            self.conv1 = StyledConv(channels[0], channels[0], style_dim)
            self.to_rgb1 = ToRGB(channels[0], style_dim, upsample=False)
            # each block: upsampling conv, conv, ToRGB; rosinality's empty `upsamples` list holds no
            # weights and is left out
            self.convs = nn.ModuleList()
            self.to_rgbs = nn.ModuleList()
            for cin, cout in zip(channels[:-1], channels[1:]):
                self.convs.append(StyledConv(cin, cout, style_dim, upsample=True))
                self.convs.append(StyledConv(cout, cout, style_dim))
                self.to_rgbs.append(ToRGB(cout, style_dim))
            self.noises = nn.Module()
            for i in range(self.num_layers):
                res = 2 ** ((i + 5) // 2)  # 4, 8, 8, 16, 16, ...
                self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        # the checkpoint's running mean of w, when it has one; not part of the state dict
        self.register_buffer("latent_avg", None, persistent=False)

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, style_dim) → w (B, style_dim)."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"z must have shape (B, {self.style_dim}) but is {tuple(z.shape)}")
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0, use_saved: bool = True) -> torch.Tensor:
        """The mean w (1, style_dim), the centre for truncation.

        The checkpoint's ``latent_avg`` when it has one (and ``use_saved``); otherwise the mean of
        ``mapping(z)`` over ``n`` z drawn on the CPU from ``seed``, the same on every device.
        """
        if use_saved and self.latent_avg is not None:
            return self.latent_avg.clone()
        if n < 1:
            raise ValueError(f"`n` must be at least 1 but is {n}")
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        total = sum(self.mapping(chunk.to(self.device)).sum(0) for chunk in z.split(1024))
        return (total / n)[None]

    def to_w_plus(self, w: torch.Tensor) -> torch.Tensor:
        """w (B, style_dim) → W+ (B, n_latent, style_dim): an independent copy of w per layer."""
        if w.ndim != 2 or w.shape[1] != self.style_dim:
            raise ValueError(f"w must have shape (B, {self.style_dim}) but is {tuple(w.shape)}")
        return w[:, None].repeat(1, self.n_latent, 1)

    def synthesis(self, w_plus: torch.Tensor) -> torch.Tensor:
        """W+ (B, n_latent, style_dim) → images (B, 3, size, size), nominally in [-1, 1], unclamped."""
        # 1. check inputs
        if w_plus.ndim != 3 or tuple(w_plus.shape[1:]) != (self.n_latent, self.style_dim):
            raise ValueError(f"w_plus must have shape (B, {self.n_latent}, {self.style_dim}) "
                             f"but is {tuple(w_plus.shape)}")
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        # 2. the 4×4 start: constant, styled conv, first RGB
        x = self.conv1(self.input(w_plus.shape[0]), w_plus[:, 0], noise[0])  # (B, C, 4, 4)
        rgb = self.to_rgb1(x, w_plus[:, 1])  # (B, 3, 4, 4)
        # 3. each block doubles the resolution and refines the upsampled RGB
        for k, to_rgb in enumerate(self.to_rgbs):
            i = 2 * k + 1  # the block's first layer index (into w_plus and noise)
            x = self.convs[2 * k](x, w_plus[:, i], noise[i])
            x = self.convs[2 * k + 1](x, w_plus[:, i + 1], noise[i + 1])
            rgb = to_rgb(x, w_plus[:, i + 2], rgb)
        return rgb

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        return self.synthesis(w_plus)

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                        source: str = "state dict") -> Generator:
        """Rebuild from a rosinality ``g_ema`` state dict: shapes give the config; loads strictly.

        Returns a frozen (``requires_grad=False``), eval-mode float32 model on the CPU; ``source``
        names the file in error messages.
        """
        model = cls(**infer_config(state_dict, source))
        check_state(model.state_dict(), state_dict, source,
                    f"a rosinality {model.size}px generator with the widths read from the file")
        model.load_state_dict(state_dict, strict=True)
        if latent_avg is not None:
            if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != model.style_dim:
                shape = tuple(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
                raise ValueError(f"{source}: 'latent_avg' must hold {model.style_dim} values but is {shape}")
            model.latent_avg = latent_avg.detach().float().reshape(1, model.style_dim).clone()
        return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Reading checkpoints


def _tensor(state_dict: Mapping, key: str, ndim: int, source: str) -> torch.Tensor:
    if key not in state_dict:
        raise ValueError(f"{source} is missing key {key!r}; is it a rosinality StyleGAN2 generator?")
    value = state_dict[key]
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{source}: {key!r} should be a {ndim}-d tensor but is {shape}")
    return value


def _count(state_dict: Mapping, pattern: str, start: int = 0) -> int:
    """How many consecutive indices from ``start`` have ``pattern.format(i)`` in the state dict."""
    i = start
    while pattern.format(i) in state_dict:
        i += 1
    return i - start


def infer_config(state_dict: Mapping[str, torch.Tensor], source: str = "state dict") -> dict:
    """Generator arguments read from a rosinality state dict's keys and tensor shapes."""
    n_mlp = _count(state_dict, "style.{}.weight", start=1)  # style.0 is the weightless PixelNorm
    style_dim = _tensor(state_dict, "conv1.conv.modulation.weight", 2, source).shape[1]
    n_blocks = _count(state_dict, "to_rgbs.{}.conv.weight")  # one per doubling after 4×4
    channels = [_tensor(state_dict, "input.input", 4, source).shape[1]]
    # each block's width is the output width of its upsampling conv: weight (1, out, in, 3, 3)
    channels += [_tensor(state_dict, f"convs.{2 * k}.conv.weight", 5, source).shape[1] for k in range(n_blocks)]
    return dict(size=2 ** (n_blocks + 2), style_dim=style_dim, n_mlp=n_mlp, channels=channels)


def load_generator(path: str | Path, device: str | torch.device | None = None) -> Generator:
    """Load a rosinality StyleGAN2 checkpoint: a dict with ``g_ema`` (and ``latent_avg``), or a bare state dict.

    Returns a frozen, eval-mode float32 ``Generator`` on ``device`` (the CPU when None). Raises
    ``FileNotFoundError`` for a missing file and ``ValueError``, naming the file and the key, for
    anything that is not a loadable generator. Loading is not cached: load once and share.
    """
    # 1. read the file
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"StyleGAN2 checkpoint {path} does not exist")
    try:
        checkpoint = safe_load(path)
    except Exception as err:  # torch.load raises many types for a file that is not a safe checkpoint
        raise ValueError(f"{path} is not a PyTorch checkpoint that loads with weights_only=True (only tensors, "
                         f"plain containers, argparse.Namespace and numpy scalars are allowed): "
                         f"{type(err).__name__}: {err}") from err

    # 2. find the generator's weights
    is_dict = isinstance(checkpoint, Mapping)
    if is_dict and "g_ema" in checkpoint:
        state_dict, latent_avg = checkpoint["g_ema"], checkpoint.get("latent_avg")
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{path}: 'g_ema' should be a state dict but is a {type(state_dict).__name__}")
    elif is_dict and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state_dict, latent_avg = checkpoint, None
    else:
        keys = sorted(map(str, checkpoint))[:8] if is_dict else type(checkpoint).__name__
        raise ValueError(f"{path} holds neither a 'g_ema' entry nor a bare generator state dict (found {keys})")

    # 3. rebuild from the shapes, load strictly, move to the caller's device
    model = Generator.from_state_dict(state_dict, latent_avg, source=str(path))
    model = model.to(torch.device(device) if device is not None else "cpu")
    logger.info("loaded StyleGAN2 %dpx generator (widths %s, n_mlp %d) from %s on %s",
                model.size, model.config["channels"], model.n_mlp, path, model.device)
    return model
