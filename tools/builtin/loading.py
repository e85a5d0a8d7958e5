"""Reading and writing the built-in backend's weights.

Each model is one safetensors file whose metadata carries the model's class and constructor
arguments, so loading rebuilds the architecture from the file and loads it with ``strict=True``.
Weights are stored in float16 (half the bytes in git) and computed in float32.

``attributes.json`` beside them records the attributes the models were trained with, in the order
of the predictors' heads and of the linear baseline's and degree offsets' rows. Loading refuses a
folder whose record differs from ``prompts/attributes.yaml`` (another order, an attribute more or
less), naming both lists: weights are never read under another attribute's name. Fields are
one file per attribute, ``field_<name>.safetensors``, found by name.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from chatedit.attributes import attribute_names

from .models import (AttributePredictor, DegreeOffsets, Encoder, Generator, IdentityEncoder, LatentField,
                     LinearDirections)

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (Encoder, Generator, AttributePredictor, IdentityEncoder, LatentField, LinearDirections, DegreeOffsets)
}
# file name → what it is; all six make up the built-in backend
MODEL_FILES = {
    "encoder": "encoder.safetensors",
    "generator": "generator.safetensors",
    "predictor": "predictor.safetensors",
    "second_predictor": "second_predictor.safetensors",
    "eval_predictor": "eval_predictor.safetensors",
    "identity": "identity.safetensors",
}
LINEAR_FILE = "linear.safetensors"
OFFSETS_FILE = "offsets.safetensors"
FIELD_FILE = "field_{name}.safetensors"
ATTRIBUTES_FILE = "attributes.json"
# the models whose rows or heads are one per attribute, in the recorded order
ORDERED = ("predictor", "second_predictor", "eval_predictor", "linear", "offsets")


def write_trained_attributes(out_dir: str | Path, names: tuple[str, ...] | list[str], replace: bool = False) -> None:
    """Records ``names``, the order the models in ``out_dir`` are trained in. Unless ``replace``
    (a run that rewrites every ordered model), refuses a folder that records another order: its
    models would then disagree with each other."""
    path = Path(out_dir) / ATTRIBUTES_FILE
    recorded = read_trained_attributes(out_dir) if path.is_file() and not replace else tuple(names)
    if recorded != tuple(names):
        raise ValueError(f"{path} records models trained with the attributes ({', '.join(recorded)}); models "
                         f"trained with ({', '.join(names)}) cannot join them: write them to another folder or "
                         "retrain all with `chatedit train builtin`")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"attributes": list(names)}, indent=2) + "\n")


def read_trained_attributes(weights_dir: str | Path) -> tuple[str, ...]:
    """The attributes the models in ``weights_dir`` were trained with, in head order."""
    path = Path(weights_dir) / ATTRIBUTES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: it records the attributes the models were trained with; "
                                "run `chatedit train builtin` to create it with them")
    try:
        names = json.loads(path.read_text())["attributes"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} must be a JSON object with an \"attributes\" list of names ({err!r})") from err
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: \"attributes\" must be a list of names, got {names!r}")
    return tuple(names)


def check_trained_attributes(weights_dir: str | Path) -> tuple[str, ...]:
    """The vocabulary's attributes, if the models in ``weights_dir`` were trained with exactly
    these in this order; otherwise raises, naming both lists."""
    names, trained = attribute_names(), read_trained_attributes(weights_dir)
    if trained != names:
        raise ValueError(
            f"the built-in models in {weights_dir} were trained with the attributes ({', '.join(trained)}) in that "
            f"order ({ATTRIBUTES_FILE}), but prompts/attributes.yaml lists ({', '.join(names)}): their heads would "
            "be read under the wrong names. Put the yaml back in the models' order, or retrain them with "
            "`chatedit train builtin` (docs/attributes.md)")
    return names


def save_model(model: torch.nn.Module, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    metadata = {"class": type(model).__name__, "config": json.dumps(model.config)}
    save_file(tensors, str(path), metadata=metadata)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuilds a model from its file and loads it strictly; raises with the path on any problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist; run `chatedit train builtin` to create it")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("class") not in MODEL_CLASSES or "config" not in metadata:
        raise ValueError(f"{path} is not a ChatEdit model file (metadata {metadata!r})")
    model = MODEL_CLASSES[metadata["class"]](**json.loads(metadata["config"]))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path} does not match its own config: {err}") from err
    return model.to(device).eval().requires_grad_(False)


@dataclass(frozen=True)
class BuiltinModels:
    encoder: Encoder
    generator: Generator
    predictor: AttributePredictor  # steers edits (and trains the fields)
    second_predictor: AttributePredictor  # steers edits with it: walks read the mean of the two
    eval_predictor: AttributePredictor  # grades edits in benchmarks, never steers
    identity: IdentityEncoder
    linear: LinearDirections
    offsets: DegreeOffsets
    fields: tuple[LatentField, ...]  # one per attribute, loaded by name, in the order of prompts/attributes.yaml
    device: torch.device


_CACHE: dict[tuple[str, str], BuiltinModels] = {}
_LOCK = threading.Lock()


def load_builtin(weights_dir: str | Path | None = None, device: str | torch.device | None = None) -> BuiltinModels:
    """The built-in models, loaded once per process and directory, then shared read-only.

    Refuses weights trained with other attributes than ``prompts/attributes.yaml`` lists, or in
    another order (``check_trained_attributes``)."""
    weights_dir = Path(weights_dir or WEIGHTS_DIR).resolve()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (str(weights_dir), str(device))
    with _LOCK:
        if key not in _CACHE:
            logger.info("loading built-in models from %s on %s", weights_dir, device)
            # 1. the attributes the models were trained with must be the vocabulary's, in its order,
            #    and every field file one of them
            names = check_trained_attributes(weights_dir)
            stray = sorted(set(_field_names(weights_dir)) - set(names))
            if stray:
                raise ValueError(f"{weights_dir} has fields for {', '.join(stray)}, which prompts/attributes.yaml "
                                 f"does not list ({', '.join(names)})")
            # 2. the models; channels-last convolutions: the same numbers, about 30% faster on a CPU (oneDNN) and on CUDA
            models = {name: load_model(weights_dir / file, device).to(memory_format=torch.channels_last)
                      for name, file in MODEL_FILES.items()}
            models["linear"] = load_model(weights_dir / LINEAR_FILE, device)
            models["offsets"] = load_model(weights_dir / OFFSETS_FILE, device)
            # 3. each ordered model has one head or row per recorded attribute
            for name in ORDERED:
                if models[name].config["num_attributes"] != len(names):
                    raise ValueError(f"the {name} in {weights_dir} is sized for {models[name].config['num_attributes']} "
                                     f"attributes, but {ATTRIBUTES_FILE} records {len(names)} ({', '.join(names)})")
            # 4. one field per attribute, found by name
            fields = tuple(load_model(weights_dir / FIELD_FILE.format(name=name), device) for name in names)
            _CACHE[key] = BuiltinModels(device=device, fields=fields, **models)
        return _CACHE[key]


def _field_names(weights_dir: Path) -> list[str]:
    """The attributes ``weights_dir`` has field files for."""
    prefix, suffix = FIELD_FILE.split("{name}")
    return [p.name[len(prefix):-len(suffix)] for p in weights_dir.glob(FIELD_FILE.format(name="*"))]
