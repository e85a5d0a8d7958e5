"""The real-photo models of ``chatedit.faces`` and ``chatedit.readers`` on the faces this backend draws.

``--reader real`` reads age and smiling with the readers made for photographs (dlib's landmarks,
dlib-models' age network, face-api's expression network) instead of CLIP; glasses, beard and bangs
stay with CLIP, which has no rival for them here. ``dlib_identity`` is dlib's 128-d embedding, the
identity model of this backend when insightface's ArcFace is not configured. Both need the faces
extra (``pip install -e ".[faces]"``); nothing here loads a model until it is first used.

The faces read are aligned crops (FFHQ's square, see ``chatedit.tools.align``). dlib's detector finds
them at 256 px and above; where it finds none (a crop too small, or a random test pipeline's noise)
the face is taken where alignment put it: the box around dlib's mean face in such a crop.
"""

from __future__ import annotations

import hashlib
import logging
import threading

import numpy as np
import torch
from cachetools import LRUCache
from PIL import Image

from chatedit.images import to_pil

from ..align import face_embedding
from ..backend import PredictorReading

logger = logging.getLogger(__name__)

READERS = ("clip", "real")  # --reader: who reads age and smiling
REAL_ATTRIBUTES = ("age", "smiling")


def real_readers_missing() -> str | None:
    """Why ``--reader real`` cannot run here (the install sentence), or None when it can."""
    from chatedit import faces, readers

    if readers.age_available() and readers.smile_available():
        return None
    return (f"--reader real needs dlib's face models, the age model and the expression network (the faces extra); "
            f"install them with {faces.INSTALL_HINT}")


def find_face(picture: Image.Image):
    """The most confident face dlib finds in an aligned crop, else the face where alignment put it.
    A walk reads each frame's degrees and its identity: the face is found once a frame, not twice."""
    key = hashlib.blake2b(picture.tobytes(), digest_size=16).digest() + bytes(str(picture.size), "ascii")
    with _FOUND_LOCK:
        face = _FOUND.get(key)
    if face is None:
        face = _find_face(picture)
        with _FOUND_LOCK:
            _FOUND[key] = face
    return face


_FOUND: LRUCache = LRUCache(maxsize=16)  # the faces of the last frames read, by their pixels
_FOUND_LOCK = threading.Lock()


def _find_face(picture: Image.Image):
    from chatedit import faces

    found = faces.detect(picture)
    if found:
        return found[0]
    (lx, ly), (rx, ry) = faces.aligned_eyes(picture.width)
    span, cx, cy = rx - lx, (lx + rx) / 2, (ly + ry) / 2  # dlib's boxes: ~2.2 eye spans wide, eyes a third down
    box = (cx - 1.1 * span, cy - 0.75 * span, cx + 1.1 * span, cy + 1.45 * span)
    return faces.face_in_box(picture, tuple(float(v) for v in box))


def dlib_identity(image: torch.Tensor) -> torch.Tensor:
    """dlib's identity embeddings (B, 128) of images (B, 3, H, W) in [0, 1], as dlib gives them (not
    unit length: dlib's distances, and ``dlib_similarity``, are calibrated on these)."""
    from chatedit import faces

    vectors = []
    for one in image:
        picture = to_pil(one)
        vectors.append(faces.identity(picture, find_face(picture)))
    return torch.from_numpy(np.stack(vectors)).float()


def dlib_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``chatedit.faces.similarity`` for batches of dlib embeddings (B, 128): 0.5 at dlib's
    same-person distance of 0.6, near 1 for one person, near 0 for two."""
    from chatedit import faces

    distance = (a - b.to(a.device)).norm(dim=-1)
    return torch.sigmoid((faces.SAME_PERSON_DISTANCE - distance) / faces.SIMILARITY_WIDTH)


class PhotoIdentity:
    """Identity on the photo backends (diffusion, wplus), which have no identity model of their own:
    insightface's ArcFace when configured (``self.insightface``, from ``--face-models``), else dlib's
    ResNet embedding when the faces extra is installed; otherwise None, never a made-up number.
    Listed before ``Backend`` among a backend's bases."""

    @torch.no_grad()
    def identity(self, image: torch.Tensor) -> torch.Tensor | None:
        """Unit-length identity embeddings (B, D) of images (B, 3, H, W) in [0, 1]."""
        if self.insightface is None:
            from chatedit import faces

            return dlib_identity(image).to(self.device) if faces.available() else None
        vectors = [face_embedding(self.insightface, to_pil(one)) for one in image]
        return torch.from_numpy(np.stack(vectors)).float().to(self.device)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """dlib's calibrated reading for dlib's embeddings (``dlib_similarity``); ArcFace's cosine otherwise."""
        return super().similarity(a, b) if self.insightface is not None else dlib_similarity(a, b)


def _position(value: float, edges: tuple[float, ...], below: float, above: float) -> float:
    """A continuous degree in [0, 6): ``value`` placed in the bands whose lower edges (of degrees 1..5) are
    ``edges``, degree 0 starting at ``below`` and degree 5 ending at ``above``; its floor is the degree."""
    return float(np.clip(np.interp(value, (below, *edges, above), np.arange(len(edges) + 2)), 0.0, len(edges) + 0.999))


class RealDegreeReader:
    """Age and smiling by ``chatedit.readers``, every other attribute by the CLIP reader it wraps."""

    def __init__(self, clip, attributes: tuple[str, ...] | list[str]):
        missing = real_readers_missing()
        if missing:
            raise ValueError(missing)
        from chatedit import readers

        self.clip, self.device, self.num_degrees = clip, clip.device, clip.num_degrees
        self.age, self.smile = readers.AgeReader(), readers.SmileReader()
        self.columns = {list(attributes).index(a): a for a in REAL_ATTRIBUTES}
        self.names = {"age": self.age.name, "smiling": self.smile.name}

    def read(self, image: torch.Tensor) -> PredictorReading:
        from chatedit import readers

        reading = self.clip.read(image)
        degrees, expected, probs = reading.degrees.clone(), reading.expected.clone(), reading.probs.clone()
        for b, one in enumerate(image):
            picture = to_pil(one)
            face = find_face(picture)
            for a, name in self.columns.items():
                if name == "age":
                    r = self.age.read(picture, face)
                    row = torch.tensor(r.probs)  # (6,) the age network's mass in each band
                    position = _position(r.value, readers.AGE_BANDS, 0.0, 90.0)
                else:
                    r = self.smile.read(picture, face)
                    p = min(max(r.value, 1e-12), 1 - 1e-12)
                    log_odds, edges = float(np.log(p / (1 - p))), readers.SMILE_LOG_ODDS
                    row = torch.nn.functional.one_hot(torch.tensor(r.degree), self.num_degrees).float()
                    position = _position(log_odds, edges, 2 * edges[0] - edges[1], 2 * edges[-1] - edges[-2])
                degrees[b, a], expected[b, a], probs[b, a] = r.degree, position, row.to(probs)
        return PredictorReading(degrees, expected, probs)
