"""dlib's face recognition ResNet in PyTorch, its weights read straight from dlib's ``.dat`` file.

dlib's ``dlib_face_recognition_resnet_model_v1.dat`` is a serialized ``anet_type`` (dlib's
``dnn_face_recognition_ex.cpp``): a 7×7 stride-2 convolution, affine, ReLU and a 3×3 stride-2 max
pool, fourteen residual blocks of two 3×3 convolutions each, an average over everything and a 128-d
linear layer without bias. ``read`` parses the file against that layout into a ``ResNetConfig`` and
a state dict; ``FaceResNet`` computes the same embedding from a 150×150 face chip (what
``dlib.get_face_chip`` cuts), within float rounding of dlib's own forward pass (which, in dlib's
prebuilt wheel, has no BLAS and is several times slower on a CPU). ``load`` does both.

The file format, from dlib's sources (``dlib/serialize.h``, ``dlib/float_details.h``,
``dlib/cuda/tensor.h``, ``dlib/dnn/{core,layers,input,loss}.h``):

- an integer is a control byte (its low nibble the number of bytes that follow, 0x80 for a
  negative value) then those bytes, little-endian; a bool is the character '0' or '1'; a string is
  its length as an integer, then its bytes;
- a float is dlib's ``float_details``: an integer mantissa and an integer exponent, the value
  ``mantissa · 2**exponent`` (exponents 32000-32002 mark +inf, -inf and NaN);
- a tensor is a version (2), its four dimensions (samples, channels, rows, columns), then its
  values as little-endian float32; an alias tensor (a view into a layer's parameters) is a version
  (1) and its four dimensions;
- a network is written from the loss inwards, each layer's version first, then from the input
  outwards each layer's details (starting with a version string such as "con_4") and what its
  ``add_layer`` keeps for training (three bools, three often empty tensors). Tags and skips write
  only their version: where they sit, and which tag each ``add_prev`` adds, is known from the
  layout alone (``_layout``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# dlib's anet_type, inner to outer: alevel4 (three blocks of 32), alevel3 (a stride-2 block of 64,
# then three), alevel2 and alevel1 (a stride-2 block of 128, of 256, then two), alevel0 (a stride-2
# block of 256). Each entry is (channels, stride of the block's first convolution).
ANET_BLOCKS = ((32, 1),) * 3 + ((64, 2),) + ((64, 1),) * 3 + ((128, 2),) + ((128, 1),) * 2 \
    + ((256, 2),) + ((256, 1),) * 2 + ((256, 2),)

CONV_MODE = 0  # dlib's layer_mode of a per-channel affine layer
FC_NO_BIAS = 1  # dlib's fc_bias_mode of a linear layer without bias
FLOAT_SPECIALS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}  # float_details' is_inf, is_ninf, is_nan


class DlibFormatError(ValueError):
    """The file is not dlib's face recognition ResNet (``anet_type``) as dlib serializes it."""


@dataclass(frozen=True)
class ResNetConfig:
    """The shape of the network: what ``FaceResNet`` is built from."""

    size: int = 150  # the chip's side in pixels (input_rgb_image_sized<150>)
    stem: int = 32  # filters of the first, 7×7 stride-2 convolution
    blocks: tuple[tuple[int, int], ...] = ANET_BLOCKS  # (channels, stride) of each residual block
    embedding: int = 128  # outputs of the final linear layer


# --------------------------------------------------------------------------- the network
#
# dlib follows each convolution with an affine layer (x · gamma + beta per channel); ``read`` folds
# it into the convolution's weights and bias, so the network has convolutions only. dlib pads a
# stride-1 convolution by half its size and a stride-2 one not at all.


class _Block(nn.Module):
    """dlib's ``ares`` (stride 1) and ``ares_down`` (stride 2): relu(shortcut + con(relu(con(x))))."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1 if stride == 1 else 0)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = x if self.stride == 1 else F.avg_pool2d(x, 2, 2)  # 2×2 stride 2, as dlib's avg_pool<2,2,2,2>
        return F.relu(_add_padded(shortcut, y))


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: where the two differ in channels, rows or columns, the smaller is zero past
    its end (a stride-2 block of 256 adds a 3×3 convolution to a 4×4 pool, and 1×1 to 2×2)."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(i, j) for i, j in zip(a.shape[1:], b.shape[1:]))

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class FaceResNet(nn.Module):
    """dlib's face recognition ResNet: (B, 150, 150, 3) uint8 RGB face chips in, (B, 128) embeddings out."""

    def __init__(self, config: ResNetConfig = ResNetConfig()):
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(3))  # the input layer's avg_red, avg_green, avg_blue
        self.conv = nn.Conv2d(3, config.stem, 7, 2, padding=0)
        channels = (config.stem, *(c for c, _ in config.blocks))
        self.blocks = nn.ModuleList(_Block(c_in, c, s) for c_in, (c, s) in zip(channels, config.blocks))
        self.fc = nn.Linear(channels[-1], config.embedding, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        size = self.config.size
        if chips.dim() != 4 or tuple(chips.shape[1:]) != (size, size, 3):
            raise ValueError(f"face chips must be (B, {size}, {size}, 3) RGB but are {tuple(chips.shape)}")
        # 1. dlib's input layer: (pixel - mean) / 256, as (B, 3, 150, 150) with channels last in memory
        x = ((chips.float() - self.mean) / 256).permute(0, 3, 1, 2)
        # 2. (B, 32, 72, 72) after the 7×7 stride-2 convolution, (B, 32, 35, 35) after the 3×3 stride-2 pool
        x = F.max_pool2d(F.relu(self.conv(x)), 3, 2)
        # 3. (B, 32, 35, 35) -> (B, 64, 17, 17) -> (B, 128, 8, 8) -> (B, 256, 4, 4) -> (B, 256, 2, 2)
        for block in self.blocks:
            x = block(x)
        # 4. the average over everything, then the linear layer: (B, 256) -> (B, 128)
        return self.fc(x.mean(dim=(2, 3)))


def load(path: str | Path) -> FaceResNet:
    """``FaceResNet`` with the weights in dlib's ``.dat`` at ``path``, for inference on the CPU.

    Raises DlibFormatError, saying what was found where, if the file is not this network.
    """
    config, state = read(path)
    net = FaceResNet(config)
    net.load_state_dict(state, strict=True)
    # channels-last filters, like the input, take oneDNN's fastest convolutions
    return net.eval().requires_grad_(False).to(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- reading the file


class _Stream:
    """dlib's serialization primitives over the bytes of a file."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.at, self.path = data, 0, path

    def fail(self, message: str):
        raise DlibFormatError(f"{self.path}, byte {self.at}: {message}")

    def int(self) -> int:
        if self.at >= len(self.data):
            self.fail("the file ends where an integer should be")
        control = self.data[self.at]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            self.fail(f"{control:#04x} is not an integer's control byte")
        value = int.from_bytes(self.data[self.at + 1:self.at + 1 + size], "little")
        self.at += 1 + size
        return -value if control & 0x80 else value

    def bool(self) -> bool:
        char = self.data[self.at:self.at + 1]
        if char not in (b"0", b"1"):
            self.fail(f"{char!r} is not a bool ('0' or '1')")
        self.at += 1
        return char == b"1"

    def string(self) -> str:
        length = self.int()
        text = self.data[self.at:self.at + length]
        if len(text) != length:
            self.fail(f"the file ends inside a {length}-byte string")
        self.at += length
        return text.decode("latin-1")

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return FLOAT_SPECIALS[exponent] if exponent in FLOAT_SPECIALS else math.ldexp(float(mantissa), exponent)

    def tensor(self) -> np.ndarray:
        """A resizable_tensor, as float32 of its (samples, channels, rows, columns) shape."""
        if (version := self.int()) != 2:
            self.fail(f"a tensor of version {version}; only version 2 (raw float32) is known")
        shape = tuple(self.int() for _ in range(4))
        count = math.prod(shape)
        if self.at + 4 * count > len(self.data):
            self.fail(f"the file ends inside a tensor of shape {shape}")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.at).reshape(shape)
        self.at += 4 * count
        return values.astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        """An alias_tensor: its shape."""
        if (version := self.int()) != 1:
            self.fail(f"an alias tensor of version {version}, not 1")
        return tuple(self.int() for _ in range(4))

    def version(self, *known: str) -> str:
        """A layer's version string, one of ``known``."""
        version = self.string()
        if version not in known:
            self.fail(f"found {version!r} where {' or '.join(map(repr, known))} should be")
        return version

    def floats(self, count: int):
        for _ in range(count):
            self.float()


def _layout(config: ResNetConfig) -> list[str]:
    """The layers inner to outer, as dlib nests them; "tag1", "skip1" and "add_prev2" name a tag and
    the tag they go back to, the other names are layer types."""
    layers = ["con", "affine", "relu", "max_pool"]
    for _, stride in config.blocks:
        # ares:      relu<add_prev1<block<tag1<x>>>>
        # ares_down: relu<add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>>
        # block:     affine<con<relu<affine<con<x>>>>>
        layers += ["tag1", "con", "affine", "relu", "con", "affine"]
        layers += ["add_prev1"] if stride == 1 else ["tag2", "skip1", "avg_pool", "add_prev2"]
        layers += ["relu"]
    return layers + ["avg_pool_everything", "fc"]


def read(path: str | Path) -> tuple[ResNetConfig, dict[str, torch.Tensor]]:
    """The config and ``FaceResNet`` state dict held by dlib's face recognition ``.dat`` at ``path``."""
    path = Path(path)
    config = ResNetConfig()
    s = _Stream(path.read_bytes(), path)
    layers = _layout(config)
    # 1. the loss layer, then each layer's version from the outside in
    if (version := s.int()) != 1:
        s.fail(f"a loss layer of version {version}, not 1")
    if s.version("loss_metric_", "loss_metric_2") == "loss_metric_2":
        s.floats(2)  # margin and distance threshold: for training
    versions = [0] * len(layers)
    for i in reversed(range(len(layers))):
        versions[i] = s.int()
        # dlib's add_layer over the input layer has versions of its own
        known = (1,) if layers[i].startswith(("tag", "skip")) else (2, 3) if i == 0 else (1, 2)
        if versions[i] not in known:
            s.fail(f"{layers[i]}, layer {i} from the input, has version {versions[i]}, not one of {known}")
    # 2. the input layer
    s.version("input_rgb_image_sized")
    mean = [s.float() for _ in range(3)]
    if (side := (s.int(), s.int())) != (config.size, config.size):
        s.fail(f"the input is {side[0]}×{side[1]}, not {config.size}×{config.size}")
    # 3. each layer's details, from the input outwards, and what its add_layer keeps
    convs, affines, fc = [], [], None
    for i, name in enumerate(layers):
        if name.startswith(("tag", "skip")):
            continue
        if name == "con":
            convs.append(_con(s))
        elif name == "affine":
            affines.append(_affine(s))
        elif name == "relu":
            if s.version("relu_", "relu_2") == "relu_2" and s.bool():
                s.fail("a disabled ReLU")
        elif name.startswith("add_prev"):
            s.version("add_prev_")
        elif name == "fc":
            fc = _fc(s)
        else:
            _pool(s, name)
        s.bool(), s.bool(), s.bool()  # whether set up, gradient stale, output disabled
        s.tensor(), s.tensor()  # the input's gradient, the cached output
        if i == 0 or versions[i] == 2:
            s.tensor()  # the parameters' gradient (on the input, the final gradient)
        if i == 0 and versions[i] == 3:
            s.int()  # the sample expansion factor
    if s.at != len(s.data):
        s.fail(f"{len(s.data) - s.at} bytes are left after the network")
    return config, _state(s, config, mean, convs, affines, fc)


def _con(s: _Stream) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """A ``con_`` layer: filters (out, in, k, k), biases (out,), and (k, stride, padding)."""
    version = s.version("con_4", "con_5", "con_6")
    params = s.tensor().ravel()
    filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (s.int() for _ in range(7))
    shape, bias_shape = s.alias(), s.alias()
    s.floats(4)  # learning-rate and weight-decay multipliers
    use_bias = s.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and s.bool():
        s.fail("a convolution with a fused ReLU")
    if (rows, stride_y, pad_y) != (cols, stride_x, pad_x) or shape[0] != filters or shape[2:] != (rows, cols):
        s.fail(f"a {rows}×{cols} convolution of {filters} filters {shape}, strides {stride_y}, {stride_x}, "
               f"padding {pad_y}, {pad_x}: only square ones are known")
    size = math.prod(shape)
    if not use_bias or params.size != size + filters or bias_shape[1] != filters:
        s.fail(f"a convolution of {params.size} parameters for filters {shape} and biases {bias_shape}")
    return params[:size].reshape(shape), params[size:], (rows, stride_y, pad_y)


def _affine(s: _Stream) -> tuple[np.ndarray, np.ndarray]:
    """An ``affine_`` layer in per-channel mode: (gamma, beta)."""
    version = s.version("affine_", "affine_2", "bn_con2")
    if version == "bn_con2":
        s.fail("a batch-norm layer (a training net); dlib's anet_type stores its affine form")
    params = s.tensor().ravel()
    gamma, beta = s.alias(), s.alias()
    mode = s.int()
    if version == "affine_2" and s.bool():
        s.fail("a disabled affine layer")
    channels = gamma[1]
    if mode != CONV_MODE or gamma != beta or gamma != (1, channels, 1, 1) or params.size != 2 * channels:
        s.fail(f"an affine layer in mode {mode} with gamma {gamma} and beta {beta}: only per-channel "
               f"(mode {CONV_MODE}) is known")
    return params[:channels], params[channels:]


def _pool(s: _Stream, name: str):
    """A ``max_pool_`` or ``avg_pool_``, checked against the layout: only its geometry is stored."""
    s.version("max_pool_2" if name == "max_pool" else "avg_pool_2")
    found = tuple(s.int() for _ in range(6))  # rows, columns, strides, paddings
    expected = {"max_pool": (3, 3, 2, 2, 0, 0), "avg_pool": (2, 2, 2, 2, 0, 0),
                "avg_pool_everything": (0, 0, 1, 1, 0, 0)}[name]
    if found != expected:
        s.fail(f"a {name} of (rows, columns, strides, paddings) {found}, not {expected}")


def _fc(s: _Stream) -> np.ndarray:
    """An ``fc_`` layer without bias: its weights as (outputs, inputs)."""
    version = s.version("fc_2", "fc_3")
    outputs, inputs = s.int(), s.int()
    params = s.tensor().ravel()
    weights, _ = s.alias(), s.alias()
    if (mode := s.int()) != FC_NO_BIAS:
        s.fail(f"a linear layer in bias mode {mode}; only fc_no_bias ({FC_NO_BIAS}) is known")
    s.floats(4)
    if version == "fc_3" and s.bool():
        s.fail("an fc_no_bias layer that uses a bias")
    if weights[:2] != (inputs, outputs) or params.size != inputs * outputs:
        s.fail(f"a linear layer of {params.size} parameters for {inputs} inputs and {outputs} outputs")
    return params.reshape(inputs, outputs).T  # dlib computes x @ W, W (inputs, outputs)


def _state(s: _Stream, config: ResNetConfig, mean, convs, affines, fc) -> dict[str, torch.Tensor]:
    """The parsed layers as ``FaceResNet``'s state dict, each affine folded into the convolution
    before it, every shape and convolution checked against the network ``config`` builds."""
    expected = FaceResNet(config)
    names = ["conv"] + [f"blocks.{i}.conv{j}" for i in range(len(config.blocks)) for j in (1, 2)]
    state = {"mean": torch.tensor(mean, dtype=torch.float32), "fc.weight": torch.from_numpy(np.ascontiguousarray(fc))}
    for name, (filters, biases, geometry), (gamma, beta) in zip(names, convs, affines):
        conv = expected.get_submodule(name)
        if geometry != (conv.kernel_size[0], conv.stride[0], conv.padding[0]):
            s.fail(f"{name} is (size, stride, padding) {geometry} in the file but "
                   f"{(conv.kernel_size[0], conv.stride[0], conv.padding[0])} in the layout")
        # affine(con(x)) = con(x) · gamma + beta = con with filters · gamma and biases · gamma + beta
        state[f"{name}.weight"] = torch.from_numpy(filters * gamma[:, None, None, None])
        state[f"{name}.bias"] = torch.from_numpy(biases * gamma + beta)
    for key, value in expected.state_dict().items():
        if key not in state or state[key].shape != value.shape:
            found = tuple(state[key].shape) if key in state else "nothing"
            s.fail(f"{key} is {tuple(value.shape)} in the layout but {found} in the file")
    return state
