"""How fast a photo is taken in: detect + align a 1-megapixel photo, and one identity embedding.

``run`` times each step several times on this CPU and reports the medians against the targets
(300 ms and 50 ms), with dlib's own forward pass of the identity network beside the one
``faces.identity`` runs (PyTorch, or dlib where it fell back); ``markdown`` is the line for
``docs/faces.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import torch
from PIL import Image

from chatedit import faces

TARGET_DETECT_ALIGN_MS = 300.0
TARGET_IDENTITY_MS = 50.0


def default_photo() -> Image.Image:
    """scikit-image's astronaut (Eileen Collins, a NASA photo in the public domain), or FileNotFoundError."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skimage")
    path = Path(spec.origin).parent / "data" / "astronaut.png" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise FileNotFoundError("no benchmark photo: pass one (chatedit faces --bench PHOTO) or install scikit-image")
    return Image.open(path)


def one_megapixel(picture: Image.Image) -> Image.Image:
    """``picture`` resized to about 1,000,000 pixels, its shape kept."""
    scale = (1_000_000 / (picture.width * picture.height)) ** 0.5
    return picture.convert("RGB").resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)


def run(picture: Image.Image, repeats: int = 7, detector: str = faces.DEFAULT_DETECTOR, size: int = 1024) -> dict:
    """Median milliseconds of detect + align (the most confident face, ``size`` px) and of ``identity``."""
    if repeats < 1:
        raise ValueError(f"`repeats` must be at least 1 but is {repeats}")
    photo = one_megapixel(picture)
    faces.identity(photo, faces.detect(photo, detector)[0])  # models loaded before the clock starts
    dlib_net = faces._dlib_recognizer(faces._models_folder() / faces.RECOGNIZER_FILE)
    intake, identity, dlib_identity, found = [], [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        detected = faces.detect(photo, detector)
        if not detected:
            raise ValueError(f"no face found in the {photo.size} benchmark photo")
        faces.align(photo, detected[0], size)
        middle = time.perf_counter()
        faces.identity(photo, detected[0])
        end = time.perf_counter()
        with faces._models().network:  # dlib's own forward pass of the same network, for comparison
            dlib_net.compute_face_descriptor(faces._rgb(photo), faces._shape(detected[0]))
        intake.append(1000 * (middle - start))
        identity.append(1000 * (end - middle))
        dlib_identity.append(1000 * (time.perf_counter() - end))
        found = len(detected)
    return {
        "photo_size": list(photo.size), "faces": found, "detector": faces.DETECTORS[detector],
        "identity_model": faces.IDENTITY_MODEL, "identity_runtime": faces.identity_runtime(),
        "crop_size": size, "repeats": repeats, "torch_threads": torch.get_num_threads(),
        "detect_align_ms": round(statistics.median(intake), 1), "identity_ms": round(statistics.median(identity), 1),
        "identity_dlib_ms": round(statistics.median(dlib_identity), 1),
        "target_detect_align_ms": TARGET_DETECT_ALIGN_MS, "target_identity_ms": TARGET_IDENTITY_MS,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    }


def markdown(result: dict) -> str:
    def against(step: str) -> str:
        ms, target = result[f"{step}_ms"], result[f"target_{step}_ms"]
        return f"{ms:.0f} ms ({'within' if ms <= target else 'over'} {target:.0f})"

    width, height = result["photo_size"]
    return (f"| {width}×{height} px, {result['detector']} | detect + align {against('detect_align')} | "
            f"identity {against('identity')} per face in {result['identity_runtime']} "
            f"(dlib's own: {result['identity_dlib_ms']:.0f} ms) | "
            f"{result['cpus']} CPUs, {result['torch_threads']} torch threads, median of {result['repeats']} |")
