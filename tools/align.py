"""Finding the face in a photo and cropping it the way FFHQ's faces were cropped.

``detect_face`` returns five points of the largest face (dlib's: the most confident): the eyes and mouth corners, "left" and
"right" as seen in the image. It uses insightface's detector when the package is installed and
``face_models`` is a folder holding its ONNX files (``pip install -e .[insightface]``; nothing is ever
downloaded), else dlib's (``chatedit.faces``) when it can run, else OpenCV's bundled Haar cascades
when the installed OpenCV has them (opencv-python 5, which insightface can pull in, does not); with
none of these it raises ``NoFaceDetector``, never an error of OpenCV's. ``align_face`` cuts the FFHQ square from
those points: eyes level, at the same place in every crop, whatever the photo's size and tilt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# A typical face, in eye distances from the midpoint between the eyes (x right, y down): left eye,
# right eye, nose tip, left and right mouth corner. The proportions of the five-point template
# ArcFace crops are aligned to: mouth 1.15 eye distances below the eye line, 0.83 wide.
TYPICAL_FACE = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.57], [-0.415, 1.155], [0.415, 1.155]])

# Where the eyes sit in a Haar cascade's face box when the eye cascade finds no pair: 30% and 70%
# of its width, 40% of its height down. A rule of thumb, not measured on real photos; on the
# procedural renders the eye cascade's pairs sit at 34-38% / 63-75% across and 41-47% down.
BOX_EYES = ((0.30, 0.40), (0.70, 0.40))
DETECT_SIDE = 1024  # OpenCV looks for faces in a copy at most this many pixels across


class NoFaceFound(ValueError):
    """The photo shows no face the detector can find."""


class NoFaceDetector(RuntimeError):
    """No face detector can run here: the message says what to install (for the log, not the person)."""


@dataclass(frozen=True)
class FaceMarks:
    """A detected face, in pixels of the photo: (x, y) points, "left" as seen in the image."""

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float  # the detector's confidence (insightface) or neighbouring detections (OpenCV)


# --------------------------------------------------------------------------- alignment


def ffhq_square(marks: FaceMarks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ's crop square: its centre and half-axes ``x`` (along the eyes) and ``y`` (down), in pixels.

    Half a side is twice the eye distance or 1.8 times the eye-to-mouth distance, whichever is
    larger; the centre is a tenth of the way from the eyes to the mouth.
    """
    eyes = (np.array(marks.left_eye) + np.array(marks.right_eye)) / 2
    eye_to_eye = np.array(marks.right_eye) - np.array(marks.left_eye)
    eye_to_mouth = (np.array(marks.mouth_left) + np.array(marks.mouth_right)) / 2 - eyes
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])  # between the eye line and the mouth's normal
    x *= max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth)) / np.hypot(*x)
    y = np.array([-x[1], x[0]])
    return eyes + 0.1 * eye_to_mouth, x, y


def align_face(picture: Image.Image, marks: FaceMarks, size: int) -> Image.Image:
    """The FFHQ square around ``marks``, rotated upright, as a ``size`` × ``size`` RGB image.

    Where the square leaves the photo the photo is mirrored, so there are no black corners; a
    square larger than ``size`` is shrunk with an antialiasing filter first.
    """
    centre, x, y = ffhq_square(marks)
    # 1. only the part of the photo the square covers (a side the square leaves stays the photo's edge)
    corners = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    x0, y0 = np.maximum(np.floor(corners.min(0)) - 2, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(corners.max(0)) + 2, picture.size).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"the face's square {corners.round().tolist()} lies outside the {picture.size} picture")
    part = picture.convert("RGB").crop((x0, y0, x1, y1))
    origin = centre - x - y - (x0, y0)
    # 2. shrink with antialiasing until the square is about ``size`` pixels across
    shrink = max(2 * np.hypot(*x) / size, 1.0)
    if shrink > 1.0:
        small = (max(round(part.width / shrink), 1), max(round(part.height / shrink), 1))
        scale = np.array(small) / part.size
        part = part.resize(small, Image.LANCZOS)
        origin, x, y = origin * scale, x * scale, y * scale
    # 3. sample the square: output pixel (u, v) comes from origin + (u + ½)·2x/size + (v + ½)·2y/size
    to_photo = np.column_stack([2 * x / size, 2 * y / size, origin + (x + y) / size - 0.5])
    out = cv2.warpAffine(np.asarray(part), to_photo, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(out, "RGB")


def aligned_points(size: int) -> np.ndarray:
    """Where a typical face's five points (``TYPICAL_FACE``) land in a ``size`` px aligned crop (5, 2)."""
    face = FaceMarks(*(tuple(p) for p in TYPICAL_FACE[[0, 1, 3, 4]]), box=(0, 0, 0, 0), score=0.0)
    centre, x, y = ffhq_square(face)
    corner = centre - x - y
    along = (TYPICAL_FACE - corner) @ np.stack([x, y]).T / (2 * np.hypot(*x) ** 2)  # (5, 2) in [0, 1]
    return along * size


# --------------------------------------------------------------------------- detection


def detect_face(picture: Image.Image, face_models: str | Path | None = None) -> FaceMarks:
    """The largest face in ``picture``: insightface's when ``face_models`` holds its models, else OpenCV's."""
    app = insightface_app(face_models)
    if app is not None:
        faces = app.get(_bgr(picture))
        if not faces:
            raise NoFaceFound("I couldn't find a face in that picture.")
        face = _largest(faces)
        kps = [tuple(float(v) for v in p) for p in np.asarray(face.kps)]  # eyes, nose, mouth corners
        return FaceMarks(kps[0], kps[1], kps[3], kps[4], tuple(float(v) for v in face.bbox[:4]),
                         float(face.det_score))
    dlib = _dlib_faces()
    if dlib is not None:
        faces = dlib.detect(picture)  # the most confident first
        if not faces:
            raise NoFaceFound("I couldn't find a face in that picture.")
        return faces[0].marks()
    missing = _missing_cascades()
    if missing:
        raise NoFaceDetector(f"no face detector can run here: the installed OpenCV ({getattr(cv2, '__version__', '?')}) "
                             f"has no {missing}, dlib's detector is not available, and no --face-models folder "
                             "was given; pip install -e '.[faces]' (dlib's detector), pass --face-models DIR "
                             "with insightface's models, or reinstall 'opencv-python-headless<5'")
    return _opencv_face(picture)


def _dlib_faces():
    """``chatedit.faces`` (dlib's detector and landmarks) when it is installed and can run here, else None."""
    try:
        from chatedit import faces
    except ImportError:
        return None
    return faces if faces.available() else None


CASCADES = ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml", "haarcascade_eye.xml")


def _missing_cascades() -> str | None:
    """What of OpenCV's Haar cascades this OpenCV lacks, in words (None: all there)."""
    if not hasattr(cv2, "CascadeClassifier"):
        return "CascadeClassifier"
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    absent = [n for n in CASCADES if folder is None or not (Path(folder) / n).is_file()]
    return f"Haar cascade files ({', '.join(absent)})" if absent else None


def insightface_app(face_models: str | Path | None):
    """insightface's ``FaceAnalysis`` over the ONNX files in ``face_models``, created once per folder.

    None (OpenCV detects, Talk-to-Edit's ArcFace compares) when no folder is given, the folder holds
    no ONNX files, or insightface is not installed. The folder's path, never a model name, goes to
    insightface, so it reads what is there and downloads nothing.
    """
    if face_models is None:
        return None
    return _insightface_app(str(Path(face_models).expanduser().resolve()))


def face_embedding(app, picture: Image.Image) -> np.ndarray:
    """insightface's unit-length ArcFace embedding (D,) of the largest face in an aligned square picture.

    insightface aligns a face its detector finds from the detected points; one it misses is cropped
    where ``aligned_points`` says a typical face sits, as generated faces are aligned already.
    """
    from insightface.utils import face_align

    bgr = _bgr(picture)
    faces = app.get(bgr)
    if faces:
        return np.asarray(_largest(faces).normed_embedding, dtype=np.float32)
    recognition = app.models["recognition"]
    crop = face_align.norm_crop(bgr, aligned_points(picture.width), image_size=recognition.input_size[0])
    vector = np.asarray(recognition.get_feat(crop), dtype=np.float32).ravel()
    return vector / np.linalg.norm(vector)


def _bgr(picture: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(picture.convert("RGB"))[:, :, ::-1])  # insightface reads OpenCV's order


def _largest(faces: list):
    return max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))


@lru_cache(maxsize=4)
def _insightface_app(folder: str):
    path = Path(folder)
    if not path.is_dir() or not (any(path.glob("*.onnx")) or (path / "manifest.json").is_file()):
        logger.warning("no insightface models in %s; faces are found with OpenCV's cascades", folder)
        return None
    try:
        from insightface.app import FaceAnalysis
    except ImportError:
        logger.warning("insightface is not installed (pip install -e .[insightface]); faces are found with OpenCV")
        return None
    try:
        app = FaceAnalysis(name=folder, allowed_modules=["detection", "recognition"])
    except AssertionError:  # insightface asserts that a detector was among the files
        raise FileNotFoundError(f"{folder} holds no insightface detection model (e.g. det_10g.onnx)") from None
    app.prepare(ctx_id=0, det_size=(640, 640))
    return app


def _opencv_face(picture: Image.Image) -> FaceMarks:
    """The largest face OpenCV's Haar cascades find; eyes from the eye cascade, else from the box."""
    gray = cv2.cvtColor(np.asarray(picture.convert("RGB")), cv2.COLOR_RGB2GRAY)
    scale = min(DETECT_SIDE / max(gray.shape), 1.0)
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    # 1. the largest face the frontal cascades find (alt2 first: it takes fewer things for faces)
    min_face = max(24, min(gray.shape) // 12)
    for name in ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml"):
        boxes, neighbours = _cascade(name).detectMultiScale2(gray, scaleFactor=1.1, minNeighbors=5,
                                                             minSize=(min_face, min_face))
        if len(boxes):
            break
    else:
        raise NoFaceFound("I couldn't find a face in that picture.")
    i = int(np.argmax([w * h for _, _, w, h in boxes]))
    x, y, w, h = (int(v) for v in boxes[i])
    # 2. its eyes from the eye cascade in the upper part of the box, else where eyes usually sit in such a box
    eyes = _eye_pair(gray[y : y + h // 2 + h // 10, x : x + w], w)
    if eyes is None:
        eyes = [(w * fx, h * fy) for fx, fy in BOX_EYES]
    left, right = (np.array(e) + (x, y) for e in eyes)
    # 3. mouth corners where a typical face has them, from the eyes: same scale and tilt
    along = right - left
    down = np.array([-along[1], along[0]])
    mouth = [(left + right) / 2 + px * along + py * down for px, py in TYPICAL_FACE[3:]]
    points = [tuple(float(v) / scale for v in p) for p in (left, right, *mouth)]
    return FaceMarks(*points, box=(x / scale, y / scale, (x + w) / scale, (y + h) / scale),
                     score=float(neighbours[i]))


def _eye_pair(upper: np.ndarray, face_width: int) -> list[tuple[float, float]] | None:
    """Centres of the largest eye on each side of the face's upper part, or None without a plausible pair."""
    found = _cascade("haarcascade_eye.xml").detectMultiScale(upper, scaleFactor=1.1, minNeighbors=3,
                                                             minSize=(face_width // 10, face_width // 10))
    middle = face_width / 2
    sides = [[e for e in found if (e[0] + e[2] / 2 < middle) == left] for left in (True, False)]
    if not all(sides):
        return None
    pair = [max(side, key=lambda e: e[2] * e[3]) for side in sides]
    (lx, ly), (rx, ry) = ((ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in pair)
    if not 0.25 * face_width < rx - lx < 0.7 * face_width or abs(ry - ly) > 0.2 * face_width:
        return None
    return [(lx, ly), (rx, ry)]


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise NoFaceDetector(f"OpenCV's cascade {path} could not be read")
    return cascade
