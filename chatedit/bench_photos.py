"""``chatedit bench edit --backend diffusion``: edits of real photographs, graded apart from what steered.

Each photo (``--photos DIR``; default: scikit-image's astronaut and matplotlib's grace_hopper.jpg,
both public-domain photographs) is taken in as an upload is (found, aligned, inverted), then edited
to random targets, one job per attribute as on the other backends (``edits`` caps the jobs per photo,
attributes taken in turn). What steered the walk (CLIP, or the real readers with ``--reader real``)
does not grade it:
- ``exact`` / ``within1`` / ``preserved``: age and smiling by ``chatedit.readers`` (dlib-models' age
  network, face-api's expression network); eyeglasses, beard and bangs by CLIP, which also steers them
  (no independent grader for those here: the table says so);
- ``identity``: dlib's embedding of the edited face against the unedited one, by ``faces.similarity``
  (0.5 at dlib's same-person distance), and insightface's ArcFace cosine when the backend has it
  (``--face-models``);
- speed: seconds per edit and per pass (one LEDITS++ denoising pass per walk step), and the GPU's
  peak memory.
A pipeline under 256 px is a test pipeline (random weights): the numbers are there, their quality unmeasured.
"""

from __future__ import annotations

import importlib.util
import itertools
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from chatedit.attributes import attribute_names
from chatedit.images import to_pil
from chatedit.progress import bar
from chatedit.tools.walk import FIELD_PHASES, FaceState, edit

BENCH_SEED = 61_000
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
REAL = ("age", "smiling")  # graded by chatedit.readers; the others by CLIP
TEST_SIZE = 256  # a pipeline drawing smaller faces is a test pipeline: random weights, quality unmeasured


def default_photos() -> list[Path]:
    """The real photographs at hand: scikit-image's astronaut, matplotlib's grace_hopper.jpg."""
    found = []
    spec = importlib.util.find_spec("skimage")
    if spec and spec.origin:
        found.append(Path(spec.origin).parent / "data" / "astronaut.png")
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.origin:
        found.append(Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    found = [p for p in found if p.is_file()]
    if not found:
        raise FileNotFoundError("no benchmark photos: pass --photos DIR or install scikit-image and matplotlib")
    return found


def photo_files(folder: Path | None) -> list[Path]:
    if folder is None:
        return default_photos()
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--photos {folder} is not a folder")
    found = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"--photos {folder} holds no photos ({', '.join(PHOTO_SUFFIXES)})")
    return found


def require_graders() -> None:
    """Raises FileNotFoundError, with the install sentence, when the real readers and dlib are missing."""
    from chatedit.tools.diffusion.real import real_readers_missing

    missing = real_readers_missing()
    if missing:
        raise FileNotFoundError(f"grading photo edits needs the real readers: {missing}")


class Graders:
    """The independent graders: real readers for age and smiling, CLIP for the rest, dlib (and ArcFace) for identity."""

    def __init__(self, backend):
        from chatedit import faces, readers

        require_graders()
        self.faces, self.backend = faces, backend
        self.age, self.smile = readers.AgeReader(), readers.SmileReader()
        self.names = {"age": self.age.name, "smiling": self.smile.name,
                      "others": "CLIP zero-shot (the backend's --clip model; it also steers these)",
                      "identity": faces.IDENTITY_MODEL}
        if backend.insightface is not None:
            self.names["identity_arcface"] = "insightface ArcFace (--face-models)"

    def read(self, image: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Degrees (A,) of one image (3, H, W), and its identity embeddings by name."""
        from chatedit.tools.align import face_embedding
        from chatedit.tools.diffusion.real import find_face

        names = attribute_names()
        degrees = self.backend.clip_reader.read(image[None]).degrees[0].cpu().clone()
        picture = to_pil(image)
        face = find_face(picture)
        degrees[names.index("age")] = self.age.read(picture, face).degree
        degrees[names.index("smiling")] = self.smile.read(picture, face).degree
        identity = {"dlib": self.faces.identity(picture, face)}
        if self.backend.insightface is not None:
            identity["arcface"] = face_embedding(self.backend.insightface, picture)
        return degrees, identity

    def similarity(self, a: dict, b: dict) -> dict:
        out = {"identity": self.faces.similarity(a["dlib"], b["dlib"])}
        if "arcface" in a:
            x, y = np.asarray(a["arcface"], np.float64), np.asarray(b["arcface"], np.float64)
            out["identity_arcface"] = float(np.clip(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)), 0, 1))
        return out


def run(backend, photos: list[Path], edits: int | None = None, progress: bool = False) -> dict:
    """Every photo's edits (``edits`` per photo at most; None: one per attribute) graded, and their speed."""
    if edits is not None and edits < 1:
        raise ValueError(f"--edits must be at least 1, got {edits}")
    names = attribute_names()
    graders = Graders(backend)
    g = torch.Generator().manual_seed(BENCH_SEED)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    # 1. each photo as an upload: found, aligned, inverted; read by what steers and by the graders
    starts = []
    for path in bar(photos, "bench edit: photos", show=progress, unit="photo"):
        with Image.open(path) as picture:
            face = backend.intake(ImageOps.exif_transpose(picture).convert("RGB"))
        latent = backend.encode(face[None])
        image = backend.generate(latent)[0]
        starts.append((path, latent, image, backend.predict(image[None]).degrees[0]) + graders.read(image))

    # 2. one random target per photo and attribute (attributes in turn from the photo's index when capped)
    jobs = []
    for i, (_, _, _, steer, _, _) in enumerate(starts):
        order = [(i + k) % len(names) for k in range(len(names))][: edits or len(names)]
        for a in order:
            choices = [d for d in range(6) if d != int(steer[a])]
            jobs.append((i, a, choices[int(torch.randint(len(choices), (1,), generator=g))]))

    # 3. walk every job and grade it
    tallies = {n: {"exact": [], "within1": [], "preserved": [], "identity": [], "identity_arcface": [],
                   "reasons": {}} for n in names}
    edit_s, pass_s = [], []
    for i, a, target in bar(jobs, "bench edit: diffusion", show=progress, unit="edit"):
        _, latent, _, _, start_degrees, start_identity = starts[i]
        identity = backend.identity(starts[i][2][None])
        stamps = [time.perf_counter()]
        out = edit(backend, FaceState(latent, identity), names[a], target=target, method="field", phases=FIELD_PHASES,
                   on_frame=lambda _, stamps=stamps: stamps.append(time.perf_counter()))
        edit_s.append(time.perf_counter() - stamps[0])
        pass_s += [b - a_ for a_, b in itertools.pairwise(stamps[1:])]  # a walk step is one denoising pass
        final, final_identity = graders.read(out.image.detach().float().cpu().clamp(0, 1))
        tally = tallies[names[a]]
        tally["exact"].append(int(final[a]) == target)
        tally["within1"].append(abs(int(final[a]) - target) <= 1)
        tally["preserved"] += [int(final[b]) == int(start_degrees[b]) for b in range(len(names)) if b != a]
        for key, value in graders.similarity(start_identity, final_identity).items():
            tally[key].append(value)
        reason = out.reason or "reached"
        tally["reasons"][reason] = tally["reasons"].get(reason, 0) + 1

    # 4. the result: rates per attribute, speed, memory, and what graded what
    result: dict = {"field": {n: _rates(t) for n, t in tallies.items() if t["exact"]}}
    result["photos"] = [str(p) for p in photos]
    result["edits"] = len(jobs)
    result["seconds_per_edit"] = round(statistics.median(edit_s), 3) if edit_s else None
    result["seconds_per_pass"] = round(statistics.median(pass_s), 3) if pass_s else None
    result["gpu_peak_memory_gib"] = (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                     if torch.cuda.is_available() else None)
    result["graders"] = graders.names
    others = "clip" if backend.degree_reader in ("clip", "real") else backend.degree_reader  # wplus: "stylegan2"
    result["steering"] = {"age": backend.degree_reader, "smiling": backend.degree_reader, "others": others}
    result["backend"] = backend.name
    result["device"] = str(backend.device)
    result["resolution"] = backend.resolution
    result["quality_measured"] = backend.resolution >= TEST_SIZE
    return result


def _rates(tally: dict) -> dict:
    out = {k: round(sum(map(float, tally[k])) / len(tally[k]), 4)
           for k in ("exact", "within1", "preserved", "identity") if tally[k]}
    if tally["identity_arcface"]:
        out["identity_arcface"] = round(statistics.fmean(tally["identity_arcface"]), 4)
    return out | {"edits": len(tally["exact"]), "outcomes": tally["reasons"]}


def markdown(result: dict) -> str:
    arcface = any("identity_arcface" in r for r in result["field"].values())
    head = "| attribute | graded by | edits | exact | within one | others preserved | identity (dlib) |"
    head += " identity (ArcFace) |" if arcface else ""
    lines = [
        f"{result['edits']} edits of {len(result['photos'])} photos ({', '.join(Path(p).name for p in result['photos'])}) "
        f"on the {result['backend']} backend at {result['resolution']} px, steered by {result['steering']['age']} for "
        f"age and smiling and {result['steering']['others'].replace('clip', 'CLIP')} for the rest, graded apart from "
        "what steered",
        "",
    ]
    if not result["quality_measured"]:
        lines += [f"**random weights: quality unmeasured** (a test pipeline under {TEST_SIZE} px); the numbers "
                  "below only show the benchmark runs end to end.", ""]
    lines += [head, "|---|---|---|---|---|---|---|" + ("---|" if arcface else "")]
    for name, r in result["field"].items():
        steers = result["steering"]["others"] == "clip"
        grader = "real reader" if name in REAL else "CLIP (also steers)" if steers else "CLIP"
        row = (f"| {name} | {grader} | {r['edits']} | {r['exact']:.0%} | {r['within1']:.0%} | {r['preserved']:.0%} | "
               f"{r['identity']:.3f} |")
        lines.append(row + (f" {r.get('identity_arcface', float('nan')):.3f} |" if arcface else ""))
    memory = result["gpu_peak_memory_gib"]
    lines += [
        "",
        f"Median {result['seconds_per_edit']:.2f} s per edit and {result['seconds_per_pass'] or 0:.2f} s per pass "
        f"on {result['device']}; GPU peak memory: {f'{memory:.2f} GiB' if memory is not None else 'no GPU'}.",
        "",
        "Graders: " + "; ".join(f"{k}: {v}" for k, v in result["graders"].items()) + ".",
        "Identity (dlib) is faces.similarity of dlib's embeddings before and after: 0.5 at dlib's same-person "
        "distance of 0.6. Eyeglasses, beard and bangs are graded by CLIP, which also steers them: their rates "
        "say how far the walk agreed with its own reader, not an independent measure.",
    ]
    return "\n".join(lines)
