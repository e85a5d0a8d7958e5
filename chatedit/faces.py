"""What ChatEdit sees of the faces in a photo, with dlib's published models.

``detect`` finds faces with dlib's HOG frontal detector (built into dlib) or its CNN detector
(``mmod_human_face_detector.dat``) and places five landmarks on each with dlib's 5-point shape
predictor: the outer and inner corner of each eye and the base of the nose. ``align`` cuts the
FFHQ square from them (eyes level, at FFHQ's eye height); ``identity`` is dlib's 128-d ResNet
embedding and ``similarity`` maps the distance between two of them to [0, 1]. dlib cuts the face
chip; the ResNet runs in PyTorch (``chatedit.dlib_resnet``, its weights read from dlib's own file,
the same embedding within float rounding and several times faster than dlib's wheel, which has no
BLAS), or in dlib where that file cannot be read for PyTorch (a warning says so).

The models come from the ``face-recognition-models`` package (``pip install -e ".[faces]"``,
which also brings ``dlib-bin``); nothing is downloaded. They are read once per process, on first
use. ``available()`` says whether they are installed; without them every call raises
``FacesNotInstalled`` with the sentence to install them. ``docs/faces.md`` has the measurements.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from chatedit.tools.align import FaceMarks, align_face

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[faces]"'
MODELS_PACKAGE = "face_recognition_models"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNIZER_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CNN_FILE = "mmod_human_face_detector.dat"
DETECTORS = {"hog": "dlib HOG frontal face detector", "cnn": f"dlib MMOD CNN face detector ({CNN_FILE})"}
LANDMARK_MODEL = f"dlib 5-point shape predictor ({PREDICTOR_FILE})"
IDENTITY_MODEL = f"dlib ResNet face recognition v1 ({RECOGNIZER_FILE})"
# The identity network reads the chip dlib's compute_face_descriptor cuts: the five landmarks fitted to
# dlib's mean face, padded by a quarter of it on each side, 150 px (its input_rgb_image_sized<150>).
IDENTITY_CHIP_SIZE = 150
IDENTITY_PADDING = 0.25
DEFAULT_DETECTOR = "hog"  # 75-100 ms on a 1-Mpx photo on a CPU; the CNN takes 6-7 s (docs/faces.md)

# Faces are looked for in a copy of about this many pixels (larger photos are shrunk, smaller ones
# enlarged), so the detector's cost is bounded and faces down to ~8% of a side are found.
DETECT_PIXELS = 1_000_000

# Similarity is a logistic in the embedding distance, centred at dlib's documented "same person"
# threshold (0.6 Euclidean: 99.38% on LFW) and SIMILARITY_WIDTH wide: 0.5 at 0.6, 0.88 at 0.5,
# 0.98 at 0.4, 0.12 at 0.7, 0.02 at 0.8.
SAME_PERSON_DISTANCE = 0.6
SIMILARITY_WIDTH = 0.05

# dlib's mean face (its get_face_chip_details, points 17-67 of the 68-point layout, in a unit
# square), at the five points the 5-point predictor marks, in its order, then the two mouth
# corners: the mouth the FFHQ crop needs is placed where this face has it.
MEAN_FACE = np.array([
    [0.858516, 0.216423],  # 0: outer corner of the eye on the image's right (68-point 45)
    [0.645647, 0.231733],  # 1: its inner corner (42)
    [0.121737, 0.216423],  # 2: outer corner of the eye on the image's left (36)
    [0.334606, 0.231733],  # 3: its inner corner (39)
    [0.490127, 0.628106],  # 4: base of the nose (33)
])
MEAN_MOUTH = np.array([[0.254149, 0.780233], [0.726104, 0.780233]])  # 48, 54: left, right as seen


class FacesNotInstalled(RuntimeError):
    """dlib or its face models are not installed."""


@dataclass(frozen=True)
class Face:
    """A face found in a photo, in the photo's pixels; "left" and "right" as seen in the image."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    landmarks: tuple[tuple[float, float], ...]  # the five points of MEAN_FACE, in its order
    detector: str  # the model's name (DETECTORS), or "given box" when the box was not detected
    score: float  # the detector's confidence (HOG: SVM margin; CNN: its score); 0 for a given box

    @property
    def left_eye(self) -> tuple[float, float]:
        return tuple(float(v) for v in np.mean(self.landmarks[2:4], axis=0))

    @property
    def right_eye(self) -> tuple[float, float]:
        return tuple(float(v) for v in np.mean(self.landmarks[0:2], axis=0))

    def marks(self) -> FaceMarks:
        """The eyes and (estimated) mouth corners the FFHQ crop is cut from.

        The 5-point predictor marks no mouth: the mouth corners are MEAN_MOUTH carried by the
        similarity transform (scale, rotation, shift) that best fits MEAN_FACE to the landmarks.
        """
        points = np.asarray(self.landmarks, dtype=np.float64)
        mouth = _similarity_fit(MEAN_FACE, points)(MEAN_MOUTH)
        return FaceMarks(self.left_eye, self.right_eye, tuple(mouth[0]), tuple(mouth[1]), self.box, self.score)


def available() -> bool:
    """Whether dlib and the face models are installed (imports nothing heavy, reads no model)."""
    return importlib.util.find_spec("dlib") is not None and _models_folder() is not None


def detect(picture: Image.Image, detector: str = DEFAULT_DETECTOR) -> list[Face]:
    """Every face ``detector`` ("hog" or "cnn") finds in ``picture``, the most confident first, with its landmarks."""
    if detector not in DETECTORS:
        raise ValueError(f"`detector` must be one of {sorted(DETECTORS)} but is {detector!r}")
    models = _models()
    rgb = _rgb(picture)  # (H, W, 3) uint8
    # 1. a copy of about DETECT_PIXELS pixels: the detector's cost is bounded whatever the photo's size
    scale = (DETECT_PIXELS / (picture.width * picture.height)) ** 0.5
    size = (max(round(picture.width * scale), 1), max(round(picture.height * scale), 1))
    work = rgb if size == picture.size else np.asarray(picture.convert("RGB").resize(size, Image.BILINEAR))
    # 2. boxes and scores in the copy, back in the photo's pixels
    if detector == "hog":
        rects, scores, _ = models.hog.run(work, 0, 0.0)
    else:
        with models.network:
            found = _cnn()(work, 0)
        rects, scores = [d.rect for d in found], [d.confidence for d in found]
    sx, sy = picture.width / size[0], picture.height / size[1]
    boxes = [(r.left() * sx, r.top() * sy, (r.right() + 1) * sx, (r.bottom() + 1) * sy) for r in rects]
    # 3. landmarks in the photo itself, at its full resolution
    faces = [_face(models, rgb, box, DETECTORS[detector], float(s)) for box, s in zip(boxes, scores)]
    return sorted(faces, key=lambda f: -f.score)  # a face-like patch of clothing scores low


def face_in_box(picture: Image.Image, box: tuple[float, float, float, float] | None = None) -> Face:
    """The landmarks of a face known to fill ``box`` (default: the whole picture), without detecting.

    For pictures already cropped to a face (too small for the detectors, e.g. 25-px LFW crops).
    """
    box = box or (0.0, 0.0, float(picture.width), float(picture.height))
    return _face(_models(), _rgb(picture), box, "given box", 0.0)


def align(picture: Image.Image, face: Face, size: int = 1024) -> Image.Image:
    """``face`` cut out FFHQ's way as a ``size`` × ``size`` RGB image: eyes level, at FFHQ's eye height."""
    if size < 8:
        raise ValueError(f"`size` must be at least 8 pixels but is {size}")
    return align_face(picture, face.marks(), size)


def aligned_eyes(size: int) -> np.ndarray:
    """Where the eyes of dlib's mean face land in a ``size`` px crop from ``align`` (2, 2): left, right."""
    from chatedit.tools.align import ffhq_square

    mean = Face((0, 0, 1, 1), tuple(map(tuple, MEAN_FACE)), "mean face", 0.0)
    eyes = np.array([mean.left_eye, mean.right_eye])
    centre, x, y = ffhq_square(mean.marks())
    along = (eyes - (centre - x - y)) @ np.stack([x, y]).T / (2 * np.hypot(*x) ** 2)  # (2, 2) in [0, 1]
    return along * size


def identity(picture: Image.Image, face: Face) -> np.ndarray:
    """dlib's 128-d identity embedding of ``face`` (float32; distances below 0.6 read as the same person)."""
    import dlib

    models = _models()
    chip = dlib.get_face_chip(_rgb(picture), _shape(face), size=IDENTITY_CHIP_SIZE, padding=IDENTITY_PADDING)
    if models.identity_runtime == "PyTorch":
        import torch

        with torch.inference_mode():
            return models.recognizer(torch.from_numpy(chip)[None])[0].numpy()
    with models.network:  # dlib's network keeps each layer's output on itself: one forward pass at a time
        return np.asarray(models.recognizer.compute_face_descriptor(chip), dtype=np.float32)


def identity_runtime() -> str:
    """What runs the identity network: "PyTorch", or "dlib" where its file could not be read for PyTorch."""
    return _models().identity_runtime


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two identity embeddings are, in [0, 1]: 0.5 at dlib's same-person distance of 0.6.

    A logistic in the Euclidean distance d: 1 / (1 + exp((d - SAME_PERSON_DISTANCE) / SIMILARITY_WIDTH)).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != (128,) or b.shape != (128,):
        raise ValueError(f"identity embeddings have shape (128,) but these have {a.shape} and {b.shape}")
    distance = float(np.linalg.norm(a - b))
    return float(1.0 / (1.0 + np.exp((distance - SAME_PERSON_DISTANCE) / SIMILARITY_WIDTH)))


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _Models:
    hog: object  # dlib.fhog_object_detector
    predictor: object  # dlib.shape_predictor
    recognizer: object  # chatedit.dlib_resnet.FaceResNet, or dlib.face_recognition_model_v1 (identity_runtime)
    identity_runtime: str  # "PyTorch" or "dlib"
    network: threading.Lock  # held while dlib's recognizer or its CNN detector runs


def _models_folder() -> Path | None:
    """The installed ``face_recognition_models/models`` folder, found without importing the package
    (its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer has)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "models"
        if (folder / PREDICTOR_FILE).is_file() and (folder / RECOGNIZER_FILE).is_file():
            return folder
    return None


def _require() -> Path:
    folder = _models_folder()
    if importlib.util.find_spec("dlib") is None or folder is None:
        raise FacesNotInstalled(f"dlib's face models are not installed; install them with {INSTALL_HINT}")
    return folder


@lru_cache(maxsize=1)
def _models() -> _Models:
    folder = _require()
    import dlib

    logger.info("loading dlib's face models from %s", folder)
    recognizer, runtime = _recognizer(folder / RECOGNIZER_FILE)
    return _Models(dlib.get_frontal_face_detector(), dlib.shape_predictor(str(folder / PREDICTOR_FILE)),
                   recognizer, runtime, threading.Lock())


def _recognizer(path: Path) -> tuple[object, str]:
    """The identity network and what runs it: PyTorch, or dlib's own network if PyTorch cannot read ``path``."""
    from chatedit import dlib_resnet

    try:
        return dlib_resnet.load(path), "PyTorch"
    except dlib_resnet.DlibFormatError as error:
        logger.warning("identity falls back to dlib's own ResNet, several times slower on a CPU: "
                       "its file cannot be read for PyTorch (%s)", error)
        return _dlib_recognizer(path), "dlib"


@lru_cache(maxsize=1)
def _dlib_recognizer(path: Path):
    import dlib

    return dlib.face_recognition_model_v1(str(path))


@lru_cache(maxsize=1)
def _cnn():
    folder = _require()
    import dlib

    return dlib.cnn_face_detection_model_v1(str(folder / CNN_FILE))


# --------------------------------------------------------------------------- helpers


def _rgb(picture: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(picture.convert("RGB")))


def _rect(box: tuple[float, float, float, float]):
    import dlib

    x0, y0, x1, y1 = box
    return dlib.rectangle(round(x0), round(y0), max(round(x1) - 1, round(x0)), max(round(y1) - 1, round(y0)))


def _shape(face: Face):
    """``face``'s box and five landmarks as dlib's full_object_detection."""
    import dlib

    return dlib.full_object_detection(_rect(face.box), [dlib.point(round(x), round(y)) for x, y in face.landmarks])


def _face(models: _Models, rgb: np.ndarray, box, detector: str, score: float) -> Face:
    shape = models.predictor(rgb, _rect(box))
    points = tuple((float(shape.part(i).x), float(shape.part(i).y)) for i in range(shape.num_parts))
    return Face(tuple(float(v) for v in box), points, detector, score)


def _similarity_fit(source: np.ndarray, target: np.ndarray):
    """The similarity transform (no reflection) taking ``source`` points (N, 2) nearest ``target`` (N, 2)."""
    s, t = source[:, 0] + 1j * source[:, 1], target[:, 0] + 1j * target[:, 1]
    s0, t0 = s - s.mean(), t - t.mean()
    a = np.sum(t0 * np.conj(s0)) / np.sum(np.abs(s0) ** 2)  # scale and rotation, as one complex number

    def apply(points: np.ndarray) -> np.ndarray:
        z = a * (points[:, 0] + 1j * points[:, 1] - s.mean()) + t.mean()
        return np.column_stack([z.real, z.imag])

    return apply


# --------------------------------------------------------------------------- reading a photo


def describe(picture: Image.Image, crops: Path, detector: str = DEFAULT_DETECTOR, size: int = 256) -> list[dict]:
    """What ChatEdit sees of each face in ``picture``, as JSON-ready dicts, the most confident first.

    Each face's aligned crop is saved as ``crops`` + ``_face{i}.png`` (a path prefix). Where their
    models are installed, ``chatedit.readers`` adds ``age`` (degree, years) and ``smiling`` (degree,
    p_happy), each with its confidence and model.
    """
    from chatedit import readers

    age = readers.AgeReader() if readers.age_available() else None
    smile = readers.SmileReader() if readers.smile_available() else None
    found = []
    for i, face in enumerate(detect(picture, detector)):
        path = crops.with_name(f"{crops.name}_face{i}.png")
        path.parent.mkdir(parents=True, exist_ok=True)
        align(picture, face, size).save(path)
        found.append({
            "box": [round(v, 1) for v in face.box],
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks],
            "detector": face.detector,
            "detector_score": round(face.score, 3),
            "landmark_model": LANDMARK_MODEL,
            "identity_model": IDENTITY_MODEL,
            "embedding_norm": round(float(np.linalg.norm(identity(picture, face))), 4),
            "crop": str(path),
        })
        if age is not None:
            r = age.read(picture, face)
            found[-1]["age"] = {"degree": r.degree, "years": round(r.value, 1), "confidence": round(r.confidence, 3),
                                "model": age.name}
        if smile is not None:
            r = smile.read(picture, face)
            found[-1]["smiling"] = {"degree": r.degree, "p": round(r.value, 4), "confidence": round(r.confidence, 3),
                                    "model": smile.name}
    return found
